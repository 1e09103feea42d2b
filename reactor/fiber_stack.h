// A parked fiber's stack, walked from its saved context without stopping it: the return
// addresses of its frame-pointer chain (every build keeps frame pointers), and their names.
//
// reactor_switch_context leaves the fiber's callee-saved registers at its saved stack pointer
// (switch_x86_64.S, switch_aarch64.S; make_context mirrors the layout): the saved frame pointer
// and the return address into switch_context are read from there, then the chain of frame records
// ([fp] = the caller's fp, [fp + 8] = the return address) is followed. Every read is checked
// against the fiber's stack bounds and the chain must climb strictly, so a corrupt chain ends the
// walk instead of reading outside the stack. The chain ends at the fiber's trampoline (frame
// pointer 0).
#pragma once

#include <signal.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace reactor {

struct FrameWalk {
  std::vector<void*> pcs;  // return addresses, innermost first (at most the limit asked)
  size_t omitted = 0;      // frames past the limit
};

// Walks the frame chain starting at frame pointer `fp`, after the innermost pc `first_pc` (null:
// none), reading only [lo, hi). Any thread: it reads memory only, never follows a pointer outside
// the bounds.
FrameWalk walk_frame_chain(uintptr_t fp, void* first_pc, uintptr_t lo, uintptr_t hi,
                           size_t max_frames);

// The frames of a fiber parked by reactor_switch_context with saved stack pointer `saved_sp` on
// the stack [bottom, top); from `copy` instead when its stack was released (Reactor::Options::
// release_idle_stacks): the bytes of [saved_sp, top), kept there, are read, not the stack. The
// loop thread of the fiber's reactor (its stack must not run meanwhile).
FrameWalk walk_parked_stack(const void* saved_sp, const void* bottom, const void* top,
                            size_t max_frames, const void* copy = nullptr);

// The calling code's own frames up to `top` (the running fiber's stack top). Loop thread.
FrameWalk walk_own_stack(const void* bottom, const void* top, size_t max_frames);

// The interrupted code's frames inside a signal handler, from its `ucontext` (the handler's third
// argument): the interrupted pc, then the frame chain from the interrupted frame pointer, reading
// only [lo, hi) and only above the interrupted stack pointer (the part of a stack in use, so
// mapped). When the pc is outside this executable (in libc or the vDSO, which keep no frame
// pointers) the return address into it comes next (x86-64: the first word above the stack
// pointer, below the caller's frame, that points into this executable's code; aarch64: the link
// register if it does), so the caller is not skipped. Writes at most `max`
// pcs, innermost first; returns how many. Async-signal-safe: no allocation, no unwinder (the
// profiler's samples; glibc's backtrace() costs some 24,000 instructions a call here).
int walk_interrupted_stack(const void* ucontext, uintptr_t lo, uintptr_t hi, void** pcs, int max);
// The interrupted stack pointer, from the handler's third argument (0 on an architecture not
// handled). Async-signal-safe.
uintptr_t interrupted_sp(const void* ucontext);

// Frames captured inside a signal handler with glibc backtrace(), which walks through the signal
// frame into the interrupted code (the watchdog's stall stacks, the profiler's samples).
// Loads backtrace()'s unwinder now (it must not load inside a handler), then installs `handler`
// for `sig` with SA_SIGINFO | SA_RESTART. Any thread, before the first such signal.
void install_backtrace_handler(int sig, void (*handler)(int, siginfo_t*, void*));
// The pc the signal interrupted, from the handler's third argument (null on an architecture not
// handled). Async-signal-safe.
void* interrupted_pc(const void* ucontext);
// The index in backtrace()'s `pcs` of the interrupted pc, past the handler's own frame and the
// signal trampoline (2 when it is not among the first few). Async-signal-safe.
int first_interrupted_frame(void* const* pcs, int n, const void* interrupted);

// Names for return addresses (absl::Symbolize; "0x..." when unknown), innermost first, with the
// runtime's own parking frames (switch_context, park, the wait lists) dropped from the top so the
// first frame is the suspension point the fiber waits in (Channel::pop, sleep_until, recv...).
// Keeps the names it looked up, so many fibers with common frames cost one lookup each. It reads
// the binary's symbol tables: use it off the loop threads (offload). One thread at a time.
// absl::Symbolize reads /proc/self/maps and the ELF files itself; the watchdog, if any, has
// called absl::InitializeSymbolizer (calling it again would race with the watchdog's lookups).
class FrameSymbolizer {
 public:
  std::vector<std::string> names(const std::vector<void*>& pcs);
  // The name of the function that called with return address `pc` (it looks up pc - 1), kept
  // like those of names(), with no frame dropped (a profile's samples).
  const std::string& name(void* pc);

 private:
  std::unordered_map<void*, std::string> cache_;
};

}  // namespace reactor
