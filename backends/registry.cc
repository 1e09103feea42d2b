#include "backends/registry.h"

#include "absl/strings/str_cat.h"
#include "backends/epoll_backend.h"
#include "backends/libevent_backend.h"
#include "backends/uring_backend.h"
#include "reactor/backend.h"

namespace reactor {

absl::StatusOr<std::unique_ptr<Backend>> create_backend(std::string_view name) {
  if (name == "auto" || name == "epoll") {
    absl::StatusOr<std::unique_ptr<EpollBackend>> b = EpollBackend::create();
    if (!b.ok()) return b.status();
    return std::unique_ptr<Backend>(*std::move(b));
  }
  if (name == "io_uring" || name == "libevent") {
    return absl::UnimplementedError(absl::StrCat("backend '",
                                                 absl::string_view(name.data(), name.size()),
                                                 "' is not compiled into this build"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown backend '",
                                                 absl::string_view(name.data(), name.size()),
                                                 "' (expected auto, epoll, io_uring or libevent)"));
}

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> out;
  for (const char* name : {"epoll", "io_uring", "libevent"}) {
    BackendInfo info{name, false, ""};
    absl::StatusOr<std::unique_ptr<Backend>> b = create_backend(name);
    info.available = b.ok();
    if (!b.ok()) info.reason = std::string(b.status().message());
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace reactor
