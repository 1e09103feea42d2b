#include "reactor/stack.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>

#if defined(REACTOR_ASAN)
#include <sanitizer/asan_interface.h>
#endif

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace reactor {

const size_t kPageBytes = static_cast<size_t>(sysconf(_SC_PAGESIZE));

namespace {

constexpr uint64_t kCanary = 0x5245414354524421ULL;  // "REACTRD!"
constexpr size_t kCanaryWords = 4;

size_t page_size() {
  return kPageBytes;
}

std::atomic<int64_t> g_guarded_live{0};

size_t count_lines(const char* path) {
  std::ifstream in(path);
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

std::atomic<RunningFiberLookup> g_running_fiber{nullptr};

struct sigaction g_previous_segv;
struct sigaction g_previous_bus;

void write_all_stderr(const char* s, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, s, n);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return;
    }
    s += w;
    n -= static_cast<size_t>(w);
  }
}

void overflow_signal_handler(int sig, siginfo_t* info, void* uctx) {
  const auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  const RunningFiberLookup lookup = g_running_fiber.load(std::memory_order_acquire);
  const char* name = nullptr;
  const Stack* stack = nullptr;
  if (lookup != nullptr && lookup(&name, &stack) && stack->guarded) {
    const auto guard = reinterpret_cast<uintptr_t>(stack->mapping);
    if (addr >= guard && addr < guard + page_size()) report_overflow(name, stack->usable_size());
  }
  // Not ours: hand over to whatever was installed before, or the default action.
  const struct sigaction& prev = sig == SIGSEGV ? g_previous_segv : g_previous_bus;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction != nullptr) return prev.sa_sigaction(sig, info, uctx);
  } else if (prev.sa_handler != SIG_DFL && prev.sa_handler != SIG_IGN) {
    return prev.sa_handler(sig);
  }
  signal(sig, SIG_DFL);  // the faulting instruction runs again and ends the process
}

}  // namespace

bool Stack::canary_words_intact() const {
  const auto* words = reinterpret_cast<const uint64_t*>(bottom());
  for (size_t i = 0; i < kCanaryWords; ++i) {
    if (words[i] != kCanary) return false;
  }
  return true;
}

size_t guarded_stack_budget() {
  static const size_t budget = [] {
    size_t max_maps = 65530;
    std::ifstream in("/proc/sys/vm/max_map_count");
    in >> max_maps;
    // Leave room for everything else the process maps: libraries, heaps, thread stacks, rings.
    const size_t reserve = count_lines("/proc/self/maps") + 4096;
    return max_maps > reserve ? (max_maps - reserve) / 2 : 0;
  }();
  return budget;
}

StackPool::StackPool(size_t stack_size, size_t max_cached, size_t max_guarded)
    : stack_size_((stack_size + page_size() - 1) / page_size() * page_size()),
      max_cached_(max_cached),
      max_guarded_(max_guarded) {
  if (stack_size_ < 4 * page_size()) stack_size_ = 4 * page_size();
}

StackPool::~StackPool() {
  for (size_t i = 0; i < cached_; ++i) unmap(cache_[i]);
}

void StackPool::release_slow(Stack stack) {
  if (cached_ >= max_cached_) {
    unmap(stack);
    return;
  }
  const size_t slots = std::min(max_cached_, std::max<size_t>(16, slots_ * 2));
  auto grown = std::make_unique<Stack[]>(slots);
  for (size_t i = 0; i < cached_; ++i) grown[i] = cache_[i];
  cache_ = std::move(grown);
  slots_ = slots;
  cache_[cached_++] = stack;
}

absl::StatusOr<Stack> StackPool::allocate() {
  if (Stack cached; take_cached(&cached)) return cached;
  Stack s;
  s.mapping_size = stack_size_ + page_size();
  void* p = ::mmap(nullptr, s.mapping_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    return absl::ResourceExhaustedError(absl::StrCat("mmap of a ", s.mapping_size / 1024,
                                                     " KiB fiber stack: ", std::strerror(err)));
  }
  s.mapping = static_cast<std::byte*>(p);
  bool guard = false;
  if (guarded_owned_ < max_guarded_) {
    guard = g_guarded_live.fetch_add(1, std::memory_order_relaxed) <
            static_cast<int64_t>(guarded_stack_budget());
    if (guard && ::mprotect(s.mapping, page_size(), PROT_NONE) != 0) guard = false;  // ENOMEM
    if (!guard) g_guarded_live.fetch_sub(1, std::memory_order_relaxed);
  }
  if (guard) {
    s.guarded = true;
    ++guarded_owned_;
  } else {
    // Over budget, or the kernel ran out of mappings: a canary instead of a guard page.
    auto* words = reinterpret_cast<uint64_t*>(s.bottom());
    for (size_t i = 0; i < kCanaryWords; ++i) words[i] = kCanary;
  }
  bump(s.guarded ? guarded_in_use_ : canary_in_use_, 1);
  return s;
}

void StackPool::unmap(const Stack& s) {
  if (s.guarded) {
    g_guarded_live.fetch_sub(1, std::memory_order_relaxed);
    --guarded_owned_;
  }
#if defined(REACTOR_ASAN)
  // A fiber that ended never returned through its frames: their redzones stay poisoned in ASan's
  // shadow after munmap, and the next mapping at this address (an io_uring ring, say) would be
  // reported as a stack overflow when touched.
  __asan_unpoison_memory_region(s.mapping, s.mapping_size);
#endif
  ::munmap(s.mapping, s.mapping_size);
}

void install_overflow_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = &overflow_signal_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous_segv);
    sigaction(SIGBUS, &sa, &g_previous_bus);
  });
  // A handler for an overflowed stack cannot run on that stack: give this thread its own.
  thread_local bool alt_installed = false;
  if (alt_installed) return;
  stack_t current;
  if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE) &&
      current.ss_size >= 32 * 1024) {
    alt_installed = true;  // the sanitizer runtime (or the program) already gave it one
    return;
  }
  const size_t size = 64 * 1024;
  void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return;  // overflows then end in a plain SIGSEGV
  stack_t alt;
  alt.ss_sp = mem;
  alt.ss_size = size;
  alt.ss_flags = 0;
  if (sigaltstack(&alt, nullptr) == 0) {
    alt_installed = true;
  } else {
    ::munmap(mem, size);
  }
}

void set_running_fiber_lookup(RunningFiberLookup lookup) {
  g_running_fiber.store(lookup, std::memory_order_release);
}

void report_overflow(const char* fiber_name, size_t stack_size) {
  char buf[256];
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s != '\0' && n < sizeof buf - 1) buf[n++] = *s++;
  };
  put("fiber '");
  put(fiber_name);
  put("' overflowed its ");
  char num[24];
  size_t kib = stack_size / 1024, len = 0;
  do {
    num[len++] = static_cast<char>('0' + kib % 10);
    kib /= 10;
  } while (kib > 0 && len < sizeof num);
  while (len > 0 && n < sizeof buf - 1) buf[n++] = num[--len];
  put(" KiB stack\n");
  write_all_stderr(buf, n);
  // Default action for SIGABRT, so a sanitizer's handler does not try to unwind a broken stack.
  signal(SIGABRT, SIG_DFL);
  abort();
}

}  // namespace reactor
