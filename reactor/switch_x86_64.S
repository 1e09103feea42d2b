// Fiber context switch for x86-64 System V.
//
// void reactor_switch_context(void** save_sp, void* load_sp)
//   Pushes the callee-saved registers (rbp, rbx, r12-r15) and a 16-byte slot for the
//   floating-point control words on the current stack, stores the stack pointer in *save_sp,
//   loads load_sp and pops the same frame from it, returning with `ret` when the resumed context
//   was suspended at our own call site and through an indirect jump otherwise
//   (REACTOR_SWITCH_ALWAYS_JMP, an assembler define for timing runs only, always jumps). It
//   leaves MXCSR and the x87 control word alone: fibers share the loop thread's (reactor.h,
//   own_fp_control). No system call: the signal mask is per thread, not per fiber.
//
// void reactor_switch_context_fp(void** save_sp, void* load_sp)
//   The same frame, and it also stores the live x87 control word and MXCSR in the slot (MXCSR with
//   its sticky exception flags, as in fcontext) and loads the resumed frame's: the switch to or
//   from a fiber that owns its floating-point control state. The two routines' frames are the
//   same, so a context suspended by either can be resumed by either (what the slot then holds is
//   the reactor's business: Reactor::switch_to). Measured in docs/benchmarks.md
//   (perf/switch_variants_x86_64.S has the variants).
//
// void reactor_fiber_trampoline()
//   First "return address" of a new fiber: calls r13(r12) — entry(arg) — which never returns.
#if defined(__x86_64__)
        .text

// The pushes, with the CFI that describes them: the resumed stack holds the same frame, so an
// unwinder (the profiler's and the watchdog's signal handlers) walks on into the resumed context.
.macro  push_frame
        movq    (%rsp), %r8     // our own return address (r8 is caller-saved)
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rbp, 0
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rbx, 0
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r12, 0
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r13, 0
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r14, 0
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r15, 0
        subq    $16, %rsp
        .cfi_adjust_cfa_offset 16
.endm

.macro  pop_frame_and_return
        addq    $16, %rsp
        .cfi_adjust_cfa_offset -16
        popq    %r15
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r15
        popq    %r14
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r14
        popq    %r13
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r13
        popq    %r12
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r12
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        .cfi_restore %rbx
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        .cfi_restore %rbp
        // An indirect jump, not `ret`, when the resumed context was suspended elsewhere: a ret into
        // another stack's return address is never predicted by the return-stack buffer, the jump
        // is predicted like any other.
#if !defined(REACTOR_SWITCH_ALWAYS_JMP)
        // Resuming a context suspended at the very call site we were called from (two fibers
        // parked by the same code: a hand-off between two connections, two yielding fibers):
        // `ret` then pops the entry our own call pushed, which is the right target, and keeps the
        // return-stack buffer in step for the returns that follow on the resumed stack.
        cmpq    (%rsp), %r8
        jne     1f
        ret
1:
#endif
        popq    %rcx
        .cfi_adjust_cfa_offset -8
        .cfi_register %rip, %rcx
        jmpq    *%rcx
.endm

        .globl  reactor_switch_context
        .type   reactor_switch_context, @function
        .p2align 4
reactor_switch_context:
        .cfi_startproc
        push_frame
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        pop_frame_and_return
        .cfi_endproc
        .size   reactor_switch_context, .-reactor_switch_context

        .globl  reactor_switch_context_fp
        .type   reactor_switch_context_fp, @function
        .p2align 4
reactor_switch_context_fp:
        .cfi_startproc
        push_frame
        stmxcsr 8(%rsp)
        fnstcw  (%rsp)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        // Loaded unconditionally: comparing them with the live ones first costs more than the
        // loads (the comparison waits for the two microcoded stores above; docs/benchmarks.md,
        // "The switch and the FP control words").
        ldmxcsr 8(%rsp)
        fldcw   (%rsp)
        pop_frame_and_return
        .cfi_endproc
        // The end of both routines, for tests that single-step through them
        // (tests/context_test.cc).
        .globl  reactor_switch_context_end
reactor_switch_context_end:
        .size   reactor_switch_context_fp, .-reactor_switch_context_fp

        .globl  reactor_fiber_trampoline
        .type   reactor_fiber_trampoline, @function
        .p2align 4
reactor_fiber_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        xorl    %ebp, %ebp
        movq    %r12, %rdi
        callq   *%r13
        ud2
        .cfi_endproc
        .size   reactor_fiber_trampoline, .-reactor_fiber_trampoline
#endif
        .section .note.GNU-stack,"",@progbits
