#include "reactor/watchdog.h"

#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "absl/debugging/symbolize.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "reactor/fiber_stack.h"
#include "reactor/reactor.h"

namespace reactor {
namespace {

// ---- frame capture: preallocated slots the signal handler fills ----

constexpr int kMaxFrames = 48;
constexpr size_t kSlots = 256;

struct FrameSlot {
  std::atomic<pid_t> tid{0};
  std::atomic<int> state{0};  // 0 idle, 1 requested, 2 captured
  std::atomic<int> count{0};
  void* interrupted_pc = nullptr;  // where the signal found the thread
  void* frames[kMaxFrames];
};
FrameSlot g_slots[kSlots];

int frames_signal() {
  return SIGRTMIN + 7;
}

void frames_handler(int, siginfo_t*, void* uctx) {
  const int saved_errno = errno;
  const pid_t tid = static_cast<pid_t>(::syscall(SYS_gettid));
  for (FrameSlot& slot : g_slots) {
    if (slot.tid.load(std::memory_order_relaxed) != tid) continue;
    if (slot.state.load(std::memory_order_acquire) == 1) {
      slot.interrupted_pc = interrupted_pc(uctx);
      slot.count.store(::backtrace(slot.frames, kMaxFrames), std::memory_order_relaxed);
      slot.state.store(2, std::memory_order_release);
    }
    break;
  }
  errno = saved_errno;
}

void install_frames_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    install_backtrace_handler(frames_signal(), &frames_handler);
    char exe[4096];
    const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
      exe[n] = '\0';
      static std::string path(exe);  // the symbolizer keeps the pointer
      absl::InitializeSymbolizer(path.c_str());
    }
  });
}

FrameSlot* claim_slot(pid_t tid) {
  for (FrameSlot& slot : g_slots) {
    pid_t expected = 0;
    if (slot.tid.compare_exchange_strong(expected, tid)) {
      slot.state.store(0, std::memory_order_relaxed);
      return &slot;
    }
  }
  return nullptr;
}

int64_t thread_cpu_ns(clockid_t clock) {
  timespec ts;
  if (clock_gettime(clock, &ts) != 0) return -1;
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// State letter and current system call of thread `tid`, from /proc (served from memory).
void read_proc(pid_t tid, char* state, std::string* syscall) {
  const std::string base = absl::StrCat("/proc/self/task/", tid);
  std::ifstream stat(base + "/stat");
  std::string line;
  if (std::getline(stat, line)) {
    const size_t close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size()) *state = line[close + 2];
  }
  std::ifstream sc(base + "/syscall");
  std::string first;
  if (sc >> first) {
    if (first == "running") {
      *syscall = "running";
    } else {
      char* end = nullptr;
      const long nr = std::strtol(first.c_str(), &end, 10);
      *syscall = end != first.c_str() && nr >= 0 ? Watchdog::syscall_name(nr) : "";
    }
  }
}

// "cpu" when the thread used at least half the wall time on a CPU — or wants to: runnable in
// user space, so on a busy machine a hog that other processes keep off the CPU is still a hog.
// "blocking" otherwise (sleeping or waiting in a system call).
std::string classify(double cpu_ratio, char state, const std::string& syscall) {
  if (cpu_ratio >= 0.5) return "cpu";
  if (state == 'R' && syscall == "running") return "cpu";
  return "blocking";
}

std::vector<std::string> symbolize(void* const* pcs, int n, void* interrupted) {
  std::vector<std::string> out;
  // The handler's own frame and the signal trampoline come first: start at the interrupted pc.
  const int first = first_interrupted_frame(pcs, n, interrupted);
  char name[512];
  for (int i = first; i < n; ++i) {
    // Return addresses point after the call: look up the call itself.
    void* pc = i == first ? pcs[i] : static_cast<char*>(pcs[i]) - 1;
    if (absl::Symbolize(pc, name, sizeof name)) {
      out.emplace_back(name);
    } else {
      out.push_back(absl::StrFormat("%p", pcs[i]));
    }
  }
  return out;
}

}  // namespace

struct Watchdog::Watched {
  Reactor* reactor = nullptr;
  size_t shard = 0;
  pid_t tid = 0;
  clockid_t cpu_clock{};
  FrameSlot* slot = nullptr;
  // The previous check.
  int64_t prev_ns = 0;
  int64_t prev_cpu_ns = -1;
  // The stall in progress (stall_start_ns == 0: none).
  int64_t stall_start_ns = 0;
  uint64_t stall_id = 0;
  uint64_t fiber_id = 0;
  std::string fiber_name;
  int64_t next_report_ns = 0;     // wall time of the next re-report
  int64_t cpu_base_ns = 0;        // CPU attributed to the slice before the watched window
  int64_t cpu_window_start = -1;  // thread CPU at the start of the watched window
  bool frames_requested = false;
  bool frames_delivered = false;
  StallReport last;
};

Watchdog::Watchdog(WatchdogOptions options, Sink sink) : sink_(std::move(sink)), options_(options) {
  install_frames_handler();
}

Watchdog::~Watchdog() {
  stop();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& w : watched_) {
    if (w->slot) w->slot->tid.store(0, std::memory_order_release);
  }
}

void Watchdog::watch(Reactor* reactor, size_t shard) {
  auto w = std::make_unique<Watched>();
  w->reactor = reactor;
  w->shard = shard;
  w->tid = reactor->thread_id();
  if (pthread_getcpuclockid(reactor->thread_handle(), &w->cpu_clock) != 0)
    w->cpu_clock = CLOCK_THREAD_CPUTIME_ID;
  w->slot = claim_slot(w->tid);
  std::lock_guard<std::mutex> lock(mu_);
  watched_.push_back(std::move(w));
}

void Watchdog::unwatch(Reactor* reactor) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = watched_.begin(); it != watched_.end(); ++it) {
    Watched& w = **it;
    if (w.reactor != reactor) continue;
    if (w.stall_start_ns != 0) end_stall(w, Clock::now());  // the summary, before it goes
    if (w.slot) w.slot->tid.store(0, std::memory_order_release);
    watched_.erase(it);
    return;
  }
}

// Called with mu_ held.
void Watchdog::end_stall(Watched& w, Deadline now_tp) {
  const int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now_tp.time_since_epoch()).count();
  StallReport r = w.last;
  r.phase = StallReport::Phase::kEnded;
  const Reactor::LongSlice l = w.reactor->last_long_slice();
  r.wall = std::chrono::nanoseconds(l.start_ns == w.stall_start_ns ? l.duration_ns
                                                                   : now - w.stall_start_ns);
  if (w.slot) w.slot->state.store(0, std::memory_order_release);
  w.stall_start_ns = 0;
  deliver(std::move(r), /*rate_limited=*/false);
}

void Watchdog::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "watchdog");
    run();
  });
}

void Watchdog::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::set_options(WatchdogOptions options) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    options_ = options;
    options_changed_ = true;
  }
  cv_.notify_all();
}

WatchdogOptions Watchdog::options() const {
  std::lock_guard<std::mutex> lock(mu_);
  return options_;
}

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const Duration interval =
        std::max<Duration>(options_.threshold / 4, std::chrono::milliseconds(1));
    cv_.wait_for(lock, interval, [this] { return stop_ || options_changed_; });
    if (stop_) break;
    options_changed_ = false;
    if (!options_.enabled) {
      for (auto& w : watched_) w->stall_start_ns = 0;
      continue;
    }
    const Deadline now = Clock::now();
    for (auto& w : watched_) check(*w, now);
  }
}

bool Watchdog::allow_report(Deadline now) {
  const Deadline minute_ago = now - std::chrono::minutes(1);
  recent_reports_.erase(std::remove_if(recent_reports_.begin(), recent_reports_.end(),
                                       [&](Deadline t) { return t < minute_ago; }),
                        recent_reports_.end());
  if (static_cast<int>(recent_reports_.size()) >= options_.reports_per_minute) return false;
  recent_reports_.push_back(now);
  return true;
}

void Watchdog::deliver(StallReport report, bool rate_limited) {
  if (rate_limited && !allow_report(Clock::now())) {
    ++suppressed_pending_;
    suppressed_total_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  report.suppressed = std::exchange(suppressed_pending_, 0);
  reports_.fetch_add(1, std::memory_order_relaxed);
  if (sink_) sink_(report);
}

// Called with mu_ held (so the reactor cannot be unwatched and destroyed meanwhile).
void Watchdog::check(Watched& w, Deadline now_tp) {
  const int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now_tp.time_since_epoch()).count();
  const Reactor::CurrentSlice c = w.reactor->current_slice();
  const int64_t cpu_now = thread_cpu_ns(w.cpu_clock);
  const int64_t threshold =
      std::chrono::duration_cast<std::chrono::nanoseconds>(options_.threshold).count();

  // A stall whose slice has ended: one summary.
  if (w.stall_start_ns != 0 && (!c.in_slice || c.start_ns != w.stall_start_ns))
    end_stall(w, now_tp);

  if (c.in_slice) {
    const int64_t wall = now - c.start_ns;
    // A new stall, once a check inside the slice has measured CPU time (the first check after a
    // start or a long gap has not: it waits for the next, threshold/4 later).
    if (w.stall_start_ns == 0 && wall >= threshold && w.prev_ns > c.start_ns &&
        w.prev_cpu_ns >= 0) {
      // A new stall. CPU over the slice: measured over the watched window since the previous
      // check (inside the slice, as checks come every threshold/4), scaled to the whole slice.
      const int64_t window = w.prev_ns > c.start_ns ? now - w.prev_ns : 0;
      double ratio = 0;
      if (window > 0 && w.prev_cpu_ns >= 0 && cpu_now >= 0) {
        ratio = std::clamp(
            static_cast<double>(cpu_now - w.prev_cpu_ns) / static_cast<double>(window), 0.0, 1.0);
      }
      w.stall_start_ns = c.start_ns;
      w.stall_id = next_stall_id_++;
      w.fiber_id = c.fiber_id;
      w.fiber_name = c.fiber_name;
      w.next_report_ns = 2 * threshold;
      w.cpu_base_ns = static_cast<int64_t>(ratio * static_cast<double>(w.prev_ns - c.start_ns));
      w.cpu_window_start = w.prev_cpu_ns;
      w.frames_requested = w.frames_delivered = false;
      StallReport r;
      r.phase = StallReport::Phase::kStarted;
      r.stall_id = w.stall_id;
      r.shard = w.shard;
      r.fiber_id = c.fiber_id;
      r.fiber_name = c.fiber_name;
      r.wall = std::chrono::nanoseconds(wall);
      r.cpu = std::chrono::nanoseconds(static_cast<int64_t>(ratio * static_cast<double>(wall)));
      read_proc(w.tid, &r.thread_state, &r.syscall);
      r.kind = classify(ratio, r.thread_state, r.syscall);
      const bool want_frames = options_.backtrace == BacktraceWhen::kAlways ||
                               (options_.backtrace == BacktraceWhen::kCpuOnly && r.kind == "cpu");
      if (want_frames && w.slot != nullptr) {
        // Once per stall: the signal cuts a non-restartable sleep short.
        w.slot->state.store(1, std::memory_order_release);
        if (::syscall(SYS_tgkill, ::getpid(), w.tid, frames_signal()) == 0)
          w.frames_requested = true;
      }
      w.last = r;
      deliver(std::move(r), /*rate_limited=*/true);
    } else if (w.stall_start_ns == c.start_ns) {
      StallReport r = w.last;
      r.wall = std::chrono::nanoseconds(wall);
      if (cpu_now >= 0 && w.cpu_window_start >= 0) {
        r.cpu = std::chrono::nanoseconds(
            std::min<int64_t>(wall, w.cpu_base_ns + (cpu_now - w.cpu_window_start)));
      }
      read_proc(w.tid, &r.thread_state, &r.syscall);
      r.kind = classify(static_cast<double>(r.cpu.count()) / static_cast<double>(wall),
                        r.thread_state, r.syscall);
      if (w.frames_requested && !w.frames_delivered &&
          w.slot->state.load(std::memory_order_acquire) == 2) {
        r.frames = symbolize(w.slot->frames, w.slot->count.load(std::memory_order_relaxed),
                             w.slot->interrupted_pc);
        w.frames_delivered = true;
        w.slot->state.store(0, std::memory_order_release);
        r.phase = StallReport::Phase::kFrames;
        w.last = r;
        deliver(r, /*rate_limited=*/false);
      }
      w.last = r;
      const int64_t abort_after =
          std::chrono::duration_cast<std::chrono::nanoseconds>(options_.abort_after).count();
      if (abort_after > 0 && wall >= abort_after) {
        r.phase = StallReport::Phase::kAborting;
        deliver(r, /*rate_limited=*/false);
        std::fprintf(stderr,
                     "watchdog: shard %zu stalled %lld ms in fiber '%s'; aborting "
                     "(watchdog.abort_after_ms)\n",
                     w.shard, static_cast<long long>(wall / 1'000'000), w.fiber_name.c_str());
        std::abort();
      }
      if (wall >= w.next_report_ns) {
        while (w.next_report_ns <= wall) w.next_report_ns *= 2;
        r.phase = StallReport::Phase::kOngoing;
        deliver(std::move(r), /*rate_limited=*/true);
      }
    }
  }
  w.prev_ns = now;
  w.prev_cpu_ns = cpu_now;
}

std::string Watchdog::syscall_name(long nr) {
  static const std::unordered_map<long, const char*> kNames = {
#if defined(__x86_64__)
    {0, "read"},
    {1, "write"},
    {2, "open"},
    {3, "close"},
    {4, "stat"},
    {5, "fstat"},
    {7, "poll"},
    {8, "lseek"},
    {9, "mmap"},
    {10, "mprotect"},
    {11, "munmap"},
    {16, "ioctl"},
    {17, "pread64"},
    {18, "pwrite64"},
    {19, "readv"},
    {20, "writev"},
    {23, "select"},
    {24, "sched_yield"},
    {34, "pause"},
    {35, "nanosleep"},
    {40, "sendfile"},
    {41, "socket"},
    {42, "connect"},
    {43, "accept"},
    {44, "sendto"},
    {45, "recvfrom"},
    {46, "sendmsg"},
    {47, "recvmsg"},
    {48, "shutdown"},
    {49, "bind"},
    {50, "listen"},
    {61, "wait4"},
    {72, "fcntl"},
    {74, "fsync"},
    {75, "fdatasync"},
    {76, "truncate"},
    {77, "ftruncate"},
    {82, "rename"},
    {83, "mkdir"},
    {87, "unlink"},
    {202, "futex"},
    {217, "getdents64"},
    {230, "clock_nanosleep"},
    {232, "epoll_wait"},
    {233, "epoll_ctl"},
    {257, "openat"},
    {262, "newfstatat"},
    {270, "pselect6"},
    {271, "ppoll"},
    {275, "splice"},
    {281, "epoll_pwait"},
    {285, "fallocate"},
    {288, "accept4"},
    {318, "getrandom"},
    {332, "statx"},
    {425, "io_uring_setup"},
    {426, "io_uring_enter"},
    {441, "epoll_pwait2"},
#elif defined(__aarch64__)
    {17, "getcwd"},
    {22, "epoll_pwait"},
    {29, "ioctl"},
    {56, "openat"},
    {57, "close"},
    {63, "read"},
    {64, "write"},
    {65, "readv"},
    {66, "writev"},
    {67, "pread64"},
    {68, "pwrite64"},
    {72, "pselect6"},
    {73, "ppoll"},
    {82, "fsync"},
    {83, "fdatasync"},
    {98, "futex"},
    {101, "nanosleep"},
    {115, "clock_nanosleep"},
    {124, "sched_yield"},
    {198, "socket"},
    {202, "accept"},
    {203, "connect"},
    {206, "sendto"},
    {207, "recvfrom"},
    {211, "sendmsg"},
    {212, "recvmsg"},
    {242, "accept4"},
    {260, "wait4"},
    {425, "io_uring_setup"},
    {426, "io_uring_enter"},
    {441, "epoll_pwait2"},
#endif
  };
  auto it = kNames.find(nr);
  if (it != kNames.end()) return it->second;
  return absl::StrCat("syscall ", nr);
}

}  // namespace reactor
