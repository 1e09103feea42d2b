// Fiber context switch for AArch64 (AAPCS64).
//
// void reactor_switch_context(void** save_sp, void* load_sp)
//   Saves x19-x30 (x29 = frame pointer, x30 = return address), d8-d15 and FPCR in a 176-byte frame
//   on the current stack, stores sp in *save_sp, loads load_sp and restores the same frame.
//
// void reactor_fiber_trampoline()
//   First return address of a new fiber: calls x20(x19) — entry(arg) — which never returns.
#if defined(__aarch64__)
        .text
        .globl  reactor_switch_context
        .type   reactor_switch_context, %function
        .p2align 4
reactor_switch_context:
        sub     sp, sp, #176
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mrs     x9, fpcr
        str     x9, [sp, #160]
        mov     x9, sp
        str     x9, [x0]
        mov     sp, x1
        ldr     x9, [sp, #160]
        msr     fpcr, x9
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #176
        ret
        .size   reactor_switch_context, .-reactor_switch_context

        .globl  reactor_fiber_trampoline
        .type   reactor_fiber_trampoline, %function
        .p2align 4
reactor_fiber_trampoline:
        mov     x29, xzr
        mov     x0, x19
        blr     x20
        brk     #0
        .size   reactor_fiber_trampoline, .-reactor_fiber_trampoline
#endif
        .section .note.GNU-stack,"",%progbits
