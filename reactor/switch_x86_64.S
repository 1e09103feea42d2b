// Fiber context switch for x86-64 System V.
//
// void reactor_switch_context(void** save_sp, void* load_sp)
//   Pushes the callee-saved registers (rbp, rbx, r12-r15), MXCSR and the x87 control word on the
//   current stack, stores the stack pointer in *save_sp, loads load_sp and pops the same frame from
//   it. No system call: the signal mask is per thread, not per fiber.
//
// void reactor_fiber_trampoline()
//   First "return address" of a new fiber: calls r13(r12) — entry(arg) — which never returns.
#if defined(__x86_64__)
        .text
        .globl  reactor_switch_context
        .type   reactor_switch_context, @function
        .p2align 4
reactor_switch_context:
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
        ret
        .cfi_endproc
        .size   reactor_switch_context, .-reactor_switch_context

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
