#include "reactor/error.h"

#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace reactor {
namespace {
constexpr char kErrnoPayload[] = "reactor.errno";
}

absl::Status errno_status(int err, std::string_view op) {
  absl::Status s(absl::ErrnoToStatusCode(err),
                 absl::StrCat(absl::string_view(op.data(), op.size()), ": ", std::strerror(err),
                              " (errno ", err, ")"));
  s.SetPayload(kErrnoPayload, absl::Cord(std::to_string(err)));
  return s;
}

absl::Status errno_status(int err, std::string_view op, int fd) {
  return errno_status(err, absl::StrCat(absl::string_view(op.data(), op.size()), " on fd ", fd));
}

int status_errno(const absl::Status& status) {
  auto payload = status.GetPayload(kErrnoPayload);
  if (!payload.has_value()) return 0;
  return std::atoi(std::string(*payload).c_str());
}

}  // namespace reactor
