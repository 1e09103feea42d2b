// Benchmark-only variants of reactor_switch_context (reactor/switch_x86_64.S), to find out what
// its time goes to. Each keeps the exact frame layout of the original — so detail::make_context
// prepares a context for any of them — and the same signature, void f(void** save_sp,
// void* load_sp). Not part of libreactor.
//
//   bench_switch_jmp       returns through `popq %rcx; jmpq *%rcx` instead of `ret`. A `ret` that
//                          lands on another stack's return address is never predicted by the
//                          return stack buffer; an indirect jump is predicted like any other.
//   bench_switch_nofp      does not save or restore MXCSR and the x87 control word (the 16 bytes
//                          stay in the frame, unused).
//   bench_switch_jmp_nofp  both changes.
//   bench_switch_fp_if_changed      saves MXCSR and the x87 control word as the original does, but
//                          loads them only when the resumed context's control bits differ from
//                          the live ones. MXCSR's six sticky status flags (bits 0-5) are not
//                          carried across the switch: they stay with the thread, as glibc's
//                          <fenv.h> already treats them. Writing MXCSR or the x87 control word
//                          with a value different from the live one is what is slow (see
//                          docs/benchmarks.md); loading an equal value is cheap but still costs.
//   bench_switch_jmp_fp_if_changed  that and the `jmp` return together.
//   bench_switch_fp_early  reactor_switch_context before 2026-12-02 (ret when resuming our own
//                          call site, jmp otherwise; the control words loaded only when their
//                          control bits differ), but it
//                          stores them first, at entry, into the red zone where the frame's
//                          slots will be, and reads the resumed frame's before the pushes: the
//                          comparison then no longer waits for the two microcoded stores.
#if defined(__x86_64__)
        .text

        .globl  bench_switch_jmp
        .type   bench_switch_jmp, @function
        .p2align 4
bench_switch_jmp:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $16, %rsp
        stmxcsr 8(%rsp)
        fnstcw  (%rsp)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        ldmxcsr 8(%rsp)
        fldcw   (%rsp)
        addq    $16, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %rcx
        jmpq    *%rcx
        .cfi_endproc
        .size   bench_switch_jmp, .-bench_switch_jmp

        .globl  bench_switch_nofp
        .type   bench_switch_nofp, @function
        .p2align 4
bench_switch_nofp:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $16, %rsp
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        addq    $16, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   bench_switch_nofp, .-bench_switch_nofp

        .globl  bench_switch_jmp_nofp
        .type   bench_switch_jmp_nofp, @function
        .p2align 4
bench_switch_jmp_nofp:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $16, %rsp
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        addq    $16, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %rcx
        jmpq    *%rcx
        .cfi_endproc
        .size   bench_switch_jmp_nofp, .-bench_switch_jmp_nofp

        .globl  bench_switch_fp_if_changed
        .type   bench_switch_fp_if_changed, @function
        .p2align 4
bench_switch_fp_if_changed:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $16, %rsp
        stmxcsr 8(%rsp)
        fnstcw  (%rsp)
        movq    %rsp, (%rdi)
        movq    %rsp, %rax              // the frame just saved: the live control words
        movq    %rsi, %rsp
        movl    8(%rsp), %edx
        xorl    8(%rax), %edx
        testl   $0xFFC0, %edx           // MXCSR control bits (masks, rounding, FZ, DAZ)
        jnz     1f
        movzwl  (%rsp), %edx
        cmpw    (%rax), %dx             // x87 control word
        jne     1f
2:      addq    $16, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
1:      movl    8(%rsp), %edx           // saved control bits, live status flags
        andl    $0xFFC0, %edx
        movl    8(%rax), %ecx
        andl    $0x3F, %ecx
        orl     %ecx, %edx
        movl    %edx, 8(%rsp)
        ldmxcsr 8(%rsp)
        fldcw   (%rsp)
        jmp     2b
        .cfi_endproc
        .size   bench_switch_fp_if_changed, .-bench_switch_fp_if_changed

        .globl  bench_switch_jmp_fp_if_changed
        .type   bench_switch_jmp_fp_if_changed, @function
        .p2align 4
bench_switch_jmp_fp_if_changed:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $16, %rsp
        stmxcsr 8(%rsp)
        fnstcw  (%rsp)
        movq    %rsp, (%rdi)
        movq    %rsp, %rax
        movq    %rsi, %rsp
        movl    8(%rsp), %edx
        xorl    8(%rax), %edx
        testl   $0xFFC0, %edx
        jnz     1f
        movzwl  (%rsp), %edx
        cmpw    (%rax), %dx
        jne     1f
2:      addq    $16, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        popq    %rcx
        jmpq    *%rcx
1:      movl    8(%rsp), %edx
        andl    $0xFFC0, %edx
        movl    8(%rax), %ecx
        andl    $0x3F, %ecx
        orl     %ecx, %edx
        movl    %edx, 8(%rsp)
        ldmxcsr 8(%rsp)
        fldcw   (%rsp)
        jmp     2b
        .cfi_endproc
        .size   bench_switch_jmp_fp_if_changed, .-bench_switch_jmp_fp_if_changed

        .globl  bench_switch_fp_early
        .type   bench_switch_fp_early, @function
        .p2align 4
bench_switch_fp_early:
        .cfi_startproc
        stmxcsr -56(%rsp)       // the frame's MXCSR slot once six pushes and 16 bytes are below
        fnstcw  -64(%rsp)
        movq    (%rsp), %r8
        movl    8(%rsi), %r9d   // the resumed frame's words, long since stored
        movzwl  (%rsi), %r10d
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $16, %rsp
        movq    %rsp, (%rdi)
        movq    %rsp, %rax
        movq    %rsi, %rsp
        xorl    8(%rax), %r9d
        testl   $0xFFC0, %r9d
        jnz     1f
        cmpw    (%rax), %r10w
        jne     1f
2:      addq    $16, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        cmpq    (%rsp), %r8
        jne     3f
        ret
3:      popq    %rcx
        jmpq    *%rcx
1:      ldmxcsr 8(%rsp)
        fldcw   (%rsp)
        jmp     2b
        .cfi_endproc
        .size   bench_switch_fp_early, .-bench_switch_fp_early

#endif
        .section .note.GNU-stack,"",@progbits
