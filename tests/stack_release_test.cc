// Releasing idle stacks (Reactor::Options::release_idle_stacks): a fiber that allowed it and waits
// for an fd longer than the option gives its stack's pages back to the kernel and, woken, runs on
// with its stack exactly as it was (locals, pointers into its own frames, its frame chain for
// `fibers --stacks`); one that did not allow it, one waiting for something else, a reactor with
// the option off, and every fiber when madvise is refused keep theirs. Every backend's wait for an
// fd is releasable (a readiness wait or an io_uring poll: nothing points into the stack); a
// receive is only where the backend touches the buffer just as it returns (the readiness
// backends): io_uring's receive in flight points into the stack.
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "reactor/channel.h"
#include "reactor/fiber_stack.h"
#include "reactor/reactor.h"
#include "tests/seccomp_util.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;

constexpr Duration kAfter = 50ms;

// Whether the page holding `addr` is in memory.
bool resident(const void* addr) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  auto* start = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(addr) & ~(page - 1));
  unsigned char vec = 0;
  EXPECT_EQ(::mincore(start, page, &vec), 0);
  return (vec & 1) != 0;
}

struct Pair {
  int fds[2] = {-1, -1};
  Pair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0); }
  ~Pair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
};

// What the waiting fiber saw: the address of one of its locals, and whether its frames came back
// intact.
struct Seen {
  const void* local = nullptr;
  bool intact = false;
  bool woke = false;
};

// Touches a few pages below its caller, as a deeper call would have.
__attribute__((noinline)) int touch_deeper_pages() {
  volatile char deep[12 * 1024];
  for (size_t i = 0; i < sizeof deep; i += 512) deep[i] = static_cast<char>(i);
  return deep[512];
}

// Named, not inlined, so that its frame shows in the released fiber's stack.
__attribute__((noinline)) void wait_with_locals(int fd, Seen& seen) {
  std::array<uint64_t, 64> pattern;
  for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = 0x9e3779b97f4a7c15ull * (i + 1);
  uint64_t* const self_pointer = &pattern[17];  // a pointer into its own frame
  seen.local = &pattern[0];
  (void)touch_deeper_pages();
  const absl::Status s = Reactor::current()->backend().wait(fd, Interest::kRead, kNoDeadline);
  seen.woke = s.ok();
  bool intact = self_pointer == &pattern[17] && *self_pointer == 0x9e3779b97f4a7c15ull * 18;
  for (size_t i = 0; i < pattern.size(); ++i) {
    intact = intact && pattern[i] == 0x9e3779b97f4a7c15ull * (i + 1);
  }
  seen.intact = intact;
}

const Reactor::FiberInfo* find(const std::vector<Reactor::FiberInfo>& fibers,
                               const std::string& name) {
  for (const auto& f : fibers) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// Sleeps until the reactor has released `n` stacks, for at most the time a release may take (one
// and a half times the option) and a margin for a loaded machine.
bool wait_for_released(size_t n) {
  const Deadline until = deadline_after(kAfter * 3 / 2 + 250ms);
  while (Reactor::current()->stacks_released() < n && Clock::now() < until) {
    if (!sleep_for(5ms).ok()) return false;
  }
  return Reactor::current()->stacks_released() >= n;
}

class StackRelease : public ::testing::TestWithParam<std::string> {
 protected:
  Reactor::Options options(Duration after = kAfter) const {
    Reactor::Options o;
    o.backend = GetParam();
    o.release_idle_stacks = after;
    return o;
  }
};

TEST_P(StackRelease, IdleFdWaiterGivesItsPagesBackAndResumesIntact) {
  Seen seen;
  std::vector<std::string> frames;
  bool listed_released = false;
  absl::Status s = Reactor::run(
      [&] {
        Pair pair;
        auto waiter = spawn("idle", [&] {
          allow_stack_release();
          wait_with_locals(pair.fds[0], seen);
        });
        ASSERT_TRUE(waiter.ok());
        yield();  // it runs and parks in the fd wait
        ASSERT_NE(seen.local, nullptr);
        EXPECT_TRUE(resident(seen.local));
        EXPECT_TRUE(wait_for_released(1));
        const ReactorStats& st = Reactor::current()->stats();
        EXPECT_FALSE(resident(seen.local));  // its live page too: the bytes wait in the copy
        EXPECT_EQ(st.stacks_released.get(), 1u);
        EXPECT_EQ(st.stack_releases.get(), 1u);
        // `fibers --stacks` walks the copy (reading the released stack would fault its pages
        // back in, as zeros).
        const auto fibers = Reactor::current()->fibers_snapshot(SIZE_MAX, 32);
        const Reactor::FiberInfo* f = find(fibers, "idle");
        ASSERT_NE(f, nullptr);
        listed_released = f->stack_released;
        frames = FrameSymbolizer().names(f->frames);
        EXPECT_FALSE(resident(seen.local));
        ASSERT_EQ(::write(pair.fds[1], "x", 1), 1);
        waiter->join();
        EXPECT_EQ(Reactor::current()->stacks_released(), 0u);
        EXPECT_EQ(st.stacks_released.get(), 0u);
      },
      options());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(seen.woke);
  EXPECT_TRUE(seen.intact);
  EXPECT_TRUE(listed_released);
  bool shown = false;
  for (const std::string& name : frames)
    shown = shown || name.find("wait_with_locals") != name.npos;
  EXPECT_TRUE(shown) << absl::StrJoin(frames, "\n");
}

TEST_P(StackRelease, FiberThatDidNotAllowItKeepsItsStack) {
  Seen seen;
  absl::Status s = Reactor::run(
      [&] {
        Pair pair;
        auto waiter = spawn("idle", [&] { wait_with_locals(pair.fds[0], seen); });
        ASSERT_TRUE(waiter.ok());
        yield();
        // Beyond the longest a release may take.
        ASSERT_TRUE(sleep_for(kAfter * 3 / 2 + 50ms).ok());
        EXPECT_TRUE(resident(seen.local));
        EXPECT_EQ(Reactor::current()->stats().stack_releases.get(), 0u);
        ASSERT_EQ(::write(pair.fds[1], "x", 1), 1);
        waiter->join();
      },
      options());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(seen.intact);
}

TEST_P(StackRelease, OtherWaitsKeepTheStack) {
  // A channel's waiter node lives on the waiting fiber's stack, and a sleeping fiber is not
  // waiting for an fd: neither wait lets the stack go.
  absl::Status s = Reactor::run(
      [&] {
        Channel<int> ch(1);
        auto popper = spawn("pop", [&] {
          allow_stack_release();
          return ch.pop().value_or(-1);
        });
        auto sleeper = spawn("sleep", [&] {
          allow_stack_release();
          (void)sleep_for(kAfter * 3 / 2 + 100ms);
        });
        ASSERT_TRUE(popper.ok() && sleeper.ok());
        yield();
        ASSERT_TRUE(sleep_for(kAfter * 3 / 2 + 50ms).ok());
        EXPECT_EQ(Reactor::current()->stats().stack_releases.get(), 0u);
        ASSERT_TRUE(ch.push(5).ok());
        EXPECT_EQ(popper->join(), 5);
        sleeper->join();
      },
      options());
  ASSERT_TRUE(s.ok()) << s;
}

TEST_P(StackRelease, OffByDefault) {
  Seen seen;
  absl::Status s = Reactor::run(
      [&] {
        Pair pair;
        auto waiter = spawn("idle", [&] {
          allow_stack_release();
          wait_with_locals(pair.fds[0], seen);
        });
        ASSERT_TRUE(waiter.ok());
        yield();
        ASSERT_TRUE(sleep_for(kAfter * 3 / 2 + 50ms).ok());
        EXPECT_TRUE(resident(seen.local));
        EXPECT_EQ(Reactor::current()->stats().stack_releases.get(), 0u);
        ASSERT_EQ(::write(pair.fds[1], "x", 1), 1);
        waiter->join();
      },
      options(Duration::zero()));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(seen.intact);
}

TEST_P(StackRelease, ManyIdleWaitersAreReleasedAndEachWakesIntact) {
  // More than one sweep's worth: the rest follow after a poll.
  constexpr size_t kFibers = 300;
  std::vector<Seen> seen(kFibers);
  absl::Status s = Reactor::run(
      [&] {
        std::vector<Pair> pairs(kFibers);
        std::vector<Task<void>> tasks;
        for (size_t i = 0; i < kFibers; ++i) {
          auto t = spawn("idle", [&, i] {
            allow_stack_release();
            wait_with_locals(pairs[i].fds[0], seen[i]);
          });
          ASSERT_TRUE(t.ok());
          tasks.push_back(std::move(*t));
        }
        yield();
        EXPECT_TRUE(wait_for_released(kFibers));
        for (size_t i = 0; i < kFibers; ++i) ASSERT_EQ(::write(pairs[i].fds[1], "x", 1), 1);
        for (Task<void>& t : tasks) t.join();
        EXPECT_EQ(Reactor::current()->stacks_released(), 0u);
        EXPECT_EQ(Reactor::current()->stats().stack_releases.get(), kFibers);
      },
      options());
  ASSERT_TRUE(s.ok()) << s;
  for (const Seen& x : seen) EXPECT_TRUE(x.woke && x.intact);
}

TEST_P(StackRelease, ReceiveIntoTheStackIsReleasedOnlyWhereTheBackendHoldsNoBuffer) {
  // A readiness backend's recv waits for readability and reads as it returns; io_uring's has the
  // kernel write into the buffer later, so a fiber receiving into its stack must keep it.
  const bool releasable = GetParam() != "io_uring";
  std::string got;
  bool resident_while_idle = false;
  absl::Status s = Reactor::run(
      [&] {
        Pair pair;
        auto receiver = spawn("idle", [&] {
          allow_stack_release();
          std::array<std::byte, 64> buf{};
          absl::StatusOr<size_t> n =
              Reactor::current()->backend().recv(pair.fds[0], std::span(buf), kNoDeadline);
          if (n.ok()) got.assign(reinterpret_cast<const char*>(buf.data()), *n);
        });
        ASSERT_TRUE(receiver.ok());
        yield();
        EXPECT_EQ(wait_for_released(1), releasable);
        EXPECT_EQ(Reactor::current()->stats().stack_releases.get(), releasable ? 1u : 0u);
        resident_while_idle = Reactor::current()->stacks_released() == 0;
        ASSERT_EQ(::write(pair.fds[1], "bytes", 5), 5);
        receiver->join();
      },
      options());
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(resident_while_idle, !releasable);
  EXPECT_EQ(got, "bytes");
}

TEST_P(StackRelease, RefusedMadviseLeavesStacksAsTheyWere) {
  // In a child: the filter stays with the process that installs it.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (!test::fail_syscall_with(SYS_madvise, EPERM)) ::_exit(2);
    Seen seen[2];
    size_t released = 99, releases = 99;
    bool resident_while_idle = false;
    const absl::Status s = Reactor::run(
        [&] {
          Pair pairs[2];
          auto a = spawn("idle", [&] {
            allow_stack_release();
            wait_with_locals(pairs[0].fds[0], seen[0]);
          });
          if (!a.ok()) return;
          yield();
          (void)sleep_for(kAfter * 3 / 2 + 50ms);
          // A fiber that allows it after the refusal keeps its stack as well.
          auto b = spawn("idle", [&] {
            allow_stack_release();
            wait_with_locals(pairs[1].fds[0], seen[1]);
          });
          if (!b.ok()) return;
          yield();
          (void)sleep_for(kAfter * 3 / 2 + 50ms);
          released = Reactor::current()->stacks_released();
          releases = Reactor::current()->stats().stack_releases.get();
          resident_while_idle = resident(seen[0].local) && resident(seen[1].local);
          for (Pair& p : pairs) (void)::write(p.fds[1], "x", 1);
          a->join();
          b->join();
        },
        options());
    const bool ok = s.ok() && released == 0 && releases == 0 && resident_while_idle &&
                    seen[0].intact && seen[1].intact;
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: no filter; 1: a stack was released or came back wrong";
}

INSTANTIATE_TEST_SUITE_P(Backends, StackRelease, ::testing::ValuesIn(test::available_backends()),
                         test::backend_test_name);

}  // namespace
}  // namespace reactor
