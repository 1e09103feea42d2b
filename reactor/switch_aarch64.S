// Fiber context switch for AArch64 (AAPCS64).
//
// void reactor_switch_context(void** save_sp, void* load_sp)
//   Saves x19-x30 (x29 = frame pointer, x30 = return address) and d8-d15 in a 176-byte frame on
//   the current stack (its slot at 160 is for FPCR), stores sp in *save_sp, loads load_sp and
//   restores the same frame. FPCR is left alone: fibers share the loop thread's (reactor.h,
//   own_fp_control).
//
// void reactor_switch_context_fp(void** save_sp, void* load_sp)
//   The same, and it also saves FPCR in the slot and loads the resumed frame's: the switch to or
//   from a fiber that owns its floating-point control state. The frames are the same, so either
//   routine resumes a context suspended by either.
//
// void reactor_fiber_trampoline()
//   First return address of a new fiber: calls x20(x19) — entry(arg) — which never returns.
#if defined(__aarch64__)
        .text

.macro  save_frame
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
.endm

.macro  restore_frame_and_return
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
.endm

        .globl  reactor_switch_context
        .type   reactor_switch_context, %function
        .p2align 4
reactor_switch_context:
        save_frame
        mov     x9, sp
        str     x9, [x0]
        mov     sp, x1
        restore_frame_and_return
        .size   reactor_switch_context, .-reactor_switch_context

        .globl  reactor_switch_context_fp
        .type   reactor_switch_context_fp, %function
        .p2align 4
reactor_switch_context_fp:
        save_frame
        mrs     x9, fpcr
        str     x9, [sp, #160]
        mov     x9, sp
        str     x9, [x0]
        mov     sp, x1
        ldr     x9, [sp, #160]
        msr     fpcr, x9
        restore_frame_and_return
        .globl  reactor_switch_context_end
reactor_switch_context_end:
        .size   reactor_switch_context_fp, .-reactor_switch_context_fp

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
