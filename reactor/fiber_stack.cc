#include "reactor/fiber_stack.h"

#include <execinfo.h>
#include <ucontext.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "absl/debugging/symbolize.h"
#include "absl/strings/str_format.h"

// This executable's code (symbols the linker defines), to tell its return addresses from libc's.
extern "C" const char __executable_start[];  // NOLINT(bugprone-reserved-identifier)
extern "C" const char etext[];

namespace reactor {
namespace {

// Where reactor_switch_context's saved frame keeps the frame pointer and the return address, in
// words from the saved stack pointer (see make_context in context.cc).
#if defined(__x86_64__)
constexpr size_t kSavedFp = 7;  // rbp
constexpr size_t kSavedPc = 8;  // the return address
constexpr size_t kSavedWords = 9;
#elif defined(__aarch64__)
constexpr size_t kSavedFp = 10;  // x29
constexpr size_t kSavedPc = 11;  // x30
constexpr size_t kSavedWords = 22;
#endif

// Frames of the runtime's own parking path: dropped from the top of a parked fiber's stack.
constexpr std::string_view kParkingFrames[] = {"reactor_switch_context",
                                               "reactor::detail::", "reactor::Reactor::suspend",
                                               "reactor::Reactor::park"};

bool is_parking_frame(std::string_view name) {
  for (std::string_view p : kParkingFrames) {
    if (name.substr(0, p.size()) == p) return true;
  }
  return false;
}

// Reads a word in [lo, hi); false when it is not entirely inside. `delta`: where the bytes are
// kept, as an offset from their address (a released stack's copy), 0 for in place.
__attribute__((no_sanitize_address)) bool read_word(uintptr_t addr, uintptr_t lo, uintptr_t hi,
                                                    uintptr_t* out, uintptr_t delta = 0) {
  if (addr < lo || addr % sizeof(uintptr_t) != 0 || addr > hi || hi - addr < sizeof(uintptr_t)) {
    return false;
  }
  *out = *reinterpret_cast<const uintptr_t*>(addr + delta);
  return true;
}

// Follows the chain from `fp`, calling add(pc) for each return address. Each record is [fp] = the
// caller's fp, [fp + word] = the return address. The chain climbs strictly towards `hi`, so the
// loop ends within (hi - lo) / 16 steps whatever the stack holds; `add` returning false ends it
// too. Async-signal-safe when `add` is.
template <class Add>
void follow_chain(uintptr_t fp, uintptr_t lo, uintptr_t hi, Add add, uintptr_t delta = 0) {
  while (fp != 0) {
    uintptr_t next = 0, pc = 0;
    if (!read_word(fp, lo, hi, &next, delta) ||
        !read_word(fp + sizeof(uintptr_t), lo, hi, &pc, delta)) {
      break;
    }
    if (pc == 0 || !add(pc)) break;
    if (next <= fp) break;
    fp = next;
  }
}

bool in_executable(uintptr_t pc) {
  return pc >= reinterpret_cast<uintptr_t>(__executable_start) &&
         pc < reinterpret_cast<uintptr_t>(etext);
}

}  // namespace

namespace {
FrameWalk walk_chain(uintptr_t fp, void* first_pc, uintptr_t lo, uintptr_t hi, size_t max_frames,
                     uintptr_t delta) {
  FrameWalk w;
  auto add = [&](uintptr_t pc) {
    if (w.pcs.size() < max_frames) {
      w.pcs.push_back(reinterpret_cast<void*>(pc));
    } else {
      ++w.omitted;
    }
    return true;
  };
  if (first_pc != nullptr) add(reinterpret_cast<uintptr_t>(first_pc));
  follow_chain(fp, lo, hi, add, delta);
  return w;
}
}  // namespace

FrameWalk walk_frame_chain(uintptr_t fp, void* first_pc, uintptr_t lo, uintptr_t hi,
                           size_t max_frames) {
  return walk_chain(fp, first_pc, lo, hi, max_frames, 0);
}

uintptr_t interrupted_sp(const void* ucontext) {
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
#if defined(__x86_64__)
  return static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  return static_cast<uintptr_t>(uc->uc_mcontext.sp);
#else
  (void)uc;
  return 0;
#endif
}

int walk_interrupted_stack(const void* ucontext, uintptr_t lo, uintptr_t hi, void** pcs, int max) {
  if (max <= 0) return 0;
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
  const auto pc = reinterpret_cast<uintptr_t>(interrupted_pc(ucontext));
  const uintptr_t sp = interrupted_sp(ucontext);
  int n = 0;
  pcs[n++] = reinterpret_cast<void*>(pc);
  if (pc == 0 || sp < lo || sp >= hi) return n;
  lo = sp;  // below it: not in use, perhaps not even mapped (a main thread's stack grows)
#if defined(__x86_64__)
  const auto fp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RBP]);
  if (!in_executable(pc)) {
    // Inside libc or the vDSO, which keep no frame pointer: the return address into this
    // executable is the first word above the stack pointer that points into its code, below the
    // caller's frame (whose pointer libc leaves in rbp) or within a few dozen words.
    const uintptr_t end = fp > sp && fp < hi ? fp : std::min(hi, sp + 64 * sizeof(uintptr_t));
    for (uintptr_t at = sp, word = 0; at < end && read_word(at, lo, hi, &word);
         at += sizeof(uintptr_t)) {
      if (in_executable(word)) {
        pcs[n++] = reinterpret_cast<void*>(word);
        break;
      }
    }
  }
#elif defined(__aarch64__)
  const auto fp = static_cast<uintptr_t>(uc->uc_mcontext.regs[29]);
  const auto caller = static_cast<uintptr_t>(uc->uc_mcontext.regs[30]);
  if (!in_executable(pc) && in_executable(caller)) pcs[n++] = reinterpret_cast<void*>(caller);
#else
  const uintptr_t fp = 0;
  (void)uc;
#endif
  if (n < max) {
    follow_chain(fp, lo, hi, [&](uintptr_t ret) {
      pcs[n++] = reinterpret_cast<void*>(ret);
      return n < max;
    });
  }
  return n;
}

FrameWalk walk_parked_stack(const void* saved_sp, const void* bottom, const void* top,
                            size_t max_frames, const void* copy) {
  auto lo = reinterpret_cast<uintptr_t>(bottom);
  const auto hi = reinterpret_cast<uintptr_t>(top);
  const auto sp = reinterpret_cast<uintptr_t>(saved_sp);
  // A released stack's copy holds [saved_sp, top) only.
  uintptr_t delta = 0;
  if (copy != nullptr) {
    lo = sp;
    delta = reinterpret_cast<uintptr_t>(copy) - sp;  // modular: the copy may lie below the stack
  }
  uintptr_t fp = 0, pc = 0;
  if (sp < lo || sp > hi || (hi - sp) / sizeof(uintptr_t) < kSavedWords ||
      !read_word(sp + kSavedFp * sizeof(uintptr_t), lo, hi, &fp, delta) ||
      !read_word(sp + kSavedPc * sizeof(uintptr_t), lo, hi, &pc, delta)) {
    return {};
  }
  // The saved fp must lie above the saved frame itself.
  if (fp != 0 && fp < sp + kSavedWords * sizeof(uintptr_t)) fp = 0;
  return walk_chain(fp, reinterpret_cast<void*>(pc), lo, hi, max_frames, delta);
}

__attribute__((noinline)) FrameWalk walk_own_stack(const void* bottom, const void* top,
                                                   size_t max_frames) {
  const auto fp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  return walk_frame_chain(fp, nullptr, reinterpret_cast<uintptr_t>(bottom),
                          reinterpret_cast<uintptr_t>(top), max_frames);
}

void install_backtrace_handler(int sig, void (*handler)(int, siginfo_t*, void*)) {
  void* warm[4];
  (void)::backtrace(warm, 4);
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

void* interrupted_pc(const void* ucontext) {
  const auto* uc = static_cast<const ucontext_t*>(ucontext);
#if defined(__x86_64__)
  return reinterpret_cast<void*>(uc->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  return reinterpret_cast<void*>(uc->uc_mcontext.pc);
#else
  (void)uc;
  return nullptr;
#endif
}

int first_interrupted_frame(void* const* pcs, int n, const void* interrupted) {
  for (int i = 0; i < n && i < 6; ++i) {
    if (pcs[i] == interrupted) return i;
  }
  return n > 2 ? 2 : 0;
}

const std::string& FrameSymbolizer::name(void* pc) {
  auto [it, fresh] = cache_.try_emplace(pc);
  if (fresh) {
    char buf[512];
    // A return address points after its call: look up the call itself.
    if (absl::Symbolize(static_cast<char*>(pc) - 1, buf, sizeof buf)) {
      it->second = buf;
    } else {
      it->second = absl::StrFormat("%p", pc);
    }
  }
  return it->second;
}

std::vector<std::string> FrameSymbolizer::names(const std::vector<void*>& pcs) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < pcs.size() && is_parking_frame(name(pcs[i]))) ++i;
  if (i == pcs.size()) i = 0;  // nothing but the runtime: keep it all rather than nothing
  for (; i < pcs.size(); ++i) out.push_back(name(pcs[i]));
  return out;
}

}  // namespace reactor
