#include "backends/registry.h"

#include <cerrno>
#include <fstream>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "backends/epoll_backend.h"
#include "backends/libevent_backend.h"
#include "backends/uring_backend.h"
#include "reactor/backend.h"
#include "reactor/error.h"
#include "reactor/notice.h"

namespace reactor {
namespace {

absl::string_view view(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

std::mutex g_fallback_mu;
std::string g_fallback_reason;   // guarded by g_fallback_mu
bool g_fallback_logged = false;  // guarded by g_fallback_mu

// The likely cause of an io_uring set-up failure, from its errno and the sysctl.
std::string likely_cause(int err, const std::string& disabled) {
  switch (err) {
    case EPERM:
      if (disabled == "2")
        return "io_uring is disabled system-wide by sysctl kernel.io_uring_disabled=2";
      if (disabled == "1") {
        return "sysctl kernel.io_uring_disabled=1 allows io_uring only to CAP_SYS_ADMIN and "
               "members of kernel.io_uring_group, and this process is neither";
      }
      return "a seccomp filter denies io_uring_setup (a container runtime's seccomp profile, "
             "systemd SystemCallFilter=) or a security module forbids it";
    case ENOSYS:
      return "the kernel was built without io_uring (CONFIG_IO_URING=n), or a seccomp filter "
             "(container profile) answers io_uring_setup with ENOSYS";
    case EINVAL:
      return "the kernel refused the ring's flags: with runtime.io_uring_sqpoll, an "
             "io_uring_sqpoll_cpu that is not an online CPU, or a kernel without SQPOLL";
    case ENOMEM:
      return "not enough locked memory for the ring (RLIMIT_MEMLOCK; kernels before 5.12 charge "
             "rings to it) or out of memory";
    case EMFILE:
    case ENFILE:
      return "out of file descriptors";
    case 0:
      return "the kernel's io_uring is too old for this backend (see the missing feature above)";
    default:
      return "unexpected errno from io_uring_setup";
  }
}

// create(io_uring) failed with `s`: the same status (code and errno payload kept) with the sysctl
// and the likely cause added.
absl::Status explain_uring_failure(const absl::Status& s) {
  const std::string disabled = io_uring_disabled_sysctl();
  absl::Status out(s.code(),
                   absl::StrCat("backend 'io_uring' is unavailable: ", s.message(),
                                "; kernel.io_uring_disabled=", disabled,
                                "; likely cause: ", likely_cause(status_errno(s), disabled)));
  s.ForEachPayload(
      [&](absl::string_view key, const absl::Cord& value) { out.SetPayload(key, value); });
  return out;
}

absl::StatusOr<std::unique_ptr<Backend>> create_epoll() {
  absl::StatusOr<std::unique_ptr<EpollBackend>> b = EpollBackend::create();
  if (!b.ok()) return b.status();
  return std::unique_ptr<Backend>(*std::move(b));
}

absl::StatusOr<std::unique_ptr<Backend>> create_uring(const BackendParams& params) {
  absl::StatusOr<std::unique_ptr<Backend>> b = make_uring_backend(params);
  if (!b.ok()) return explain_uring_failure(b.status());
  return b;
}

void note_fallback(const absl::Status& why) {
  std::lock_guard<std::mutex> lock(g_fallback_mu);
  g_fallback_reason = std::string(why.message());
  if (g_fallback_logged) return;
  g_fallback_logged = true;
  notice(absl::StrCat("backend auto: using epoll, ", g_fallback_reason));
}

}  // namespace

std::string io_uring_disabled_sysctl() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  std::string value;
  if (!in || !std::getline(in, value)) {
    return "unknown (no /proc/sys/kernel/io_uring_disabled: a kernel before 6.6, or /proc/sys "
           "hidden)";
  }
  return std::string(absl::StripAsciiWhitespace(value));
}

absl::StatusOr<std::unique_ptr<Backend>> create_backend(std::string_view name,
                                                        const BackendParams& params) {
  if (name == "epoll") return create_epoll();
  if (name == "io_uring") return create_uring(params);
  if (name == "libevent") return make_libevent_backend();
  if (name == "auto") {
    absl::StatusOr<std::unique_ptr<Backend>> b = create_uring(params);
    if (b.ok()) return b;
    // SQPOLL was asked for: epoll would silently drop it.
    if (params.uring_sqpoll) return b;
    note_fallback(b.status());
    return create_epoll();
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown backend '", view(name),
                                                 "' (expected auto, epoll, io_uring or libevent)"));
}

BackendInfo probe_backend(std::string_view name) {
  BackendInfo info{std::string(name), false, "", ""};
  if (name == "io_uring") {
    // Created directly (not through create_backend) to describe what the ring got.
    absl::StatusOr<std::unique_ptr<UringBackend>> b = UringBackend::create();
    info.available = b.ok();
    if (b.ok()) {
      info.detail = (*b)->describe();
      b->reset();
      // SQPOLL (runtime.io_uring_sqpoll), off by default: whether this kernel would give it.
      UringBackend::Options sqpoll;
      sqpoll.sqpoll = true;
      absl::StatusOr<std::unique_ptr<UringBackend>> s = UringBackend::create(sqpoll);
      if (s.ok()) {
        const std::string_view mode = UringBackend::setup_mode_name((*s)->setup_mode());
        absl::StrAppend(&info.detail, "; SQPOLL available (",
                        absl::string_view(mode.data(), mode.size()), ")");
      } else {
        absl::StrAppend(&info.detail, "; SQPOLL refused: ", s.status().message());
      }
    } else {
      info.reason = std::string(explain_uring_failure(b.status()).message());
    }
    return info;
  }
  absl::StatusOr<std::unique_ptr<Backend>> b = create_backend(name);
  info.available = b.ok();
  if (!b.ok()) info.reason = std::string(b.status().message());
  return info;
}

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> out;
  for (const char* name : {"epoll", "io_uring", "libevent"}) out.push_back(probe_backend(name));
  return out;
}

std::string format_backend_table(const std::vector<BackendInfo>& backends) {
  std::string out = absl::StrFormat("%-10s %-9s %s\n", "backend", "available", "reason / detail");
  bool uring = false;
  for (const BackendInfo& b : backends) {
    absl::StrAppendFormat(&out, "%-10s %-9s %s\n", b.name, b.available ? "yes" : "no",
                          b.available ? b.detail : b.reason);
    if (b.name == "io_uring" && b.available) uring = true;
  }
  absl::StrAppend(&out, "auto -> ", uring ? "io_uring" : "epoll", "\n");
  return out;
}

std::string auto_backend_choice() {
  return probe_backend("io_uring").available ? "io_uring" : "epoll";
}

std::string auto_fallback_reason() {
  std::lock_guard<std::mutex> lock(g_fallback_mu);
  return g_fallback_reason;
}

}  // namespace reactor
