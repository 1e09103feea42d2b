// The registry's fallback when io_uring cannot be set up: in a forked child whose seccomp filter
// makes io_uring_setup fail (EPERM, as a container profile or the sysctl would; ENOSYS, as a kernel
// without io_uring would), `auto` runs on epoll, logs the reason once and reports it, and an
// explicit `io_uring` is a clear error. The child checks and reports through a pipe and its exit
// status (gtest assertions would be lost in a child).
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>

#include "backends/registry.h"
#include "reactor/error.h"
#include "reactor/net.h"
#include "reactor/reactor.h"
#include "tests/seccomp_util.h"
#include "tests/test_util.h"

namespace reactor {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Makes io_uring_setup fail with `err` in this process from now on.
bool deny_io_uring_setup(int err) {
  return test::fail_syscall_with(__NR_io_uring_setup, err);
}

struct ChildResult {
  int exit_code = -1;
  std::string report;  // what the child wrote: its failed checks, then what it saw
};

// Runs `body` in a forked child that denies io_uring_setup with `err`. The child's stderr goes to
// the report too (the fallback log line is part of what is checked). Exit status 0: every check
// passed.
ChildResult run_denied(int err,
                       const std::function<void(std::string& failures, std::string& seen)>& body) {
  int out[2];
  if (::pipe(out) != 0) return {};
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(out[0]);
    int log[2];
    std::string failures, seen;
    if (::pipe(log) != 0 || ::dup2(log[1], STDERR_FILENO) < 0)
      failures += "cannot capture stderr\n";
    if (!deny_io_uring_setup(err)) {
      failures += std::string("cannot install the seccomp filter: ") + std::strerror(errno) + "\n";
    } else {
      body(failures, seen);
    }
    std::fflush(stderr);
    ::close(log[1]);
    ::close(STDERR_FILENO);
    std::string logged;
    char buf[4096];
    for (ssize_t n; (n = ::read(log[0], buf, sizeof buf)) > 0;)
      logged.append(buf, static_cast<size_t>(n));
    // The fallback is logged exactly once, on one line, however often auto fell back.
    size_t lines = 0;
    for (size_t at = 0; (at = logged.find("backend auto: using epoll", at)) != std::string::npos;
         ++at)
      ++lines;
    if (lines != 1) failures += "fallback logged " + std::to_string(lines) + " times, not once\n";
    const std::string report = failures + "---\n" + seen + "stderr: " + logged;
    ssize_t w = ::write(out[1], report.data(), report.size());
    (void)w;
    ::_exit(failures.empty() ? 0 : 1);
  }
  ::close(out[1]);
  ChildResult r;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;)
    r.report.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  if (pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
  }
  return r;
}

void check(bool ok, const std::string& what, std::string& failures) {
  if (!ok) failures += what + "\n";
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// What every denial must produce; `errno_text` is e.g. "(errno 1)", `cause` a phrase of the cause.
void check_fallback(int err, const char* errno_text, const char* cause, std::string& failures,
                    std::string& seen) {
  // auto: epoll, twice (logged once), with the reason kept.
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::unique_ptr<Backend>> b = create_backend("auto");
    check(b.ok(), "auto failed: " + b.status().ToString(), failures);
    if (b.ok())
      check((*b)->name() == "epoll", "auto picked " + std::string((*b)->name()), failures);
  }
  const std::string reason = auto_fallback_reason();
  seen += "fallback reason: " + reason + "\n";
  check(contains(reason, "io_uring_setup"), "reason does not name io_uring_setup", failures);
  check(contains(reason, errno_text), std::string("reason does not name ") + errno_text, failures);
  check(contains(reason, "kernel.io_uring_disabled="), "reason lacks the sysctl's value", failures);
  check(contains(reason, cause), std::string("reason lacks the cause '") + cause + "'", failures);
  check(auto_backend_choice() == "epoll", "auto_backend_choice() is not epoll", failures);

  // Explicit io_uring: a clear error with the errno kept as payload.
  absl::StatusOr<std::unique_ptr<Backend>> u = create_backend("io_uring");
  check(!u.ok(), "explicit io_uring was created", failures);
  const std::string message(u.status().message());
  seen += "explicit io_uring: " + message + "\n";
  check(status_errno(u.status()) == err,
        "status_errno is " + std::to_string(status_errno(u.status())), failures);
  check(contains(message, "backend 'io_uring' is unavailable"), "message does not say unavailable",
        failures);
  check(contains(message, errno_text), std::string("message does not name ") + errno_text,
        failures);
  check(contains(message, "kernel.io_uring_disabled="), "message lacks the sysctl's value",
        failures);
  check(contains(message, cause), std::string("message lacks the cause '") + cause + "'", failures);

  // The listing agrees.
  for (const BackendInfo& info : list_backends()) {
    if (info.name == "io_uring") {
      check(!info.available, "list_backends says io_uring is available", failures);
      check(contains(info.reason, errno_text), "list_backends' reason lacks the errno", failures);
    }
    if (info.name == "epoll")
      check(info.available, "list_backends says epoll is unavailable", failures);
  }
  check(contains(format_backend_table(list_backends()), "auto -> epoll"),
        "table does not say auto -> epoll", failures);

  // And a reactor on `auto` really runs I/O on epoll.
  std::string echoed;
  absl::Status run = Reactor::run([&] {
    if (Reactor::current()->backend().name() != "epoll") return;
    auto listener = TcpListener::bind(*SocketAddress::parse_ip("127.0.0.1:0"));
    if (!listener.ok()) return;
    auto addr = listener->local_address();
    auto server = spawn("server", [&] {
      auto c = listener->accept(deadline_after(5s));
      if (c.ok()) (void)c->write_all("via epoll");
    });
    auto client = TcpStream::connect(*addr, deadline_after(5s));
    if (!client.ok()) return;
    char buf[9];
    if (client->read_exact(std::as_writable_bytes(std::span(buf)), deadline_after(5s)).ok()) {
      echoed.assign(buf, 9);
    }
    if (server.ok()) server->join();
  });
  check(run.ok(), "Reactor::run on auto failed: " + run.ToString(), failures);
  check(echoed == "via epoll", "no I/O through the fallback reactor", failures);
}

// In a child whose io_uring_setup fails with `err` under seccomp, check_fallback holds and the
// report names the errno as strerror does (`strerror_text`).
void expect_fallback_when_denied(int err, const char* errno_text, const char* cause,
                                 const char* strerror_text) {
  ChildResult r = run_denied(err, [&](std::string& failures, std::string& seen) {
    check_fallback(err, errno_text, cause, failures, seen);
  });
  EXPECT_EQ(r.exit_code, 0) << r.report;
  EXPECT_THAT(r.report, HasSubstr(strerror_text));
  std::printf("%s", r.report.c_str());
}

TEST(BackendFallback, SeccompEpermMakesAutoPickEpollAndExplicitIoUringFail) {
  expect_fallback_when_denied(EPERM, "(errno 1)", "seccomp", "Operation not permitted");
}

TEST(BackendFallback, SeccompEnosysMakesAutoPickEpollAndExplicitIoUringFail) {
  expect_fallback_when_denied(ENOSYS, "(errno 38)", "built without io_uring",
                              "Function not implemented");
}

// Without a filter, on a machine where io_uring works, auto picks it and records no fallback.
TEST(BackendFallback, AutoPicksIoUringWhenAvailable) {
  if (!probe_backend("io_uring").available) GTEST_SKIP() << probe_backend("io_uring").reason;
  absl::StatusOr<std::unique_ptr<Backend>> b = create_backend("auto");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->name(), "io_uring");
  EXPECT_EQ(auto_fallback_reason(), "");
  EXPECT_EQ(auto_backend_choice(), "io_uring");
}

TEST(BackendFallback, UnknownNameIsAClearError) {
  absl::StatusOr<std::unique_ptr<Backend>> b = create_backend("kqueue");
  ASSERT_FALSE(b.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(b.status())) << b.status();
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("unknown backend 'kqueue'"));
}

}  // namespace
}  // namespace reactor
