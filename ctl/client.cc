#include "ctl/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace reactord::ctl {
namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int err) {
  return std::strerror(err);
}

// Takes the next complete line (without "\n" and a trailing "\r") off the front of `buf`.
bool take_line(std::string& buf, std::string* line) {
  const size_t nl = buf.find('\n');
  if (nl == std::string::npos) return false;
  size_t end = nl;
  if (end > 0 && buf[end - 1] == '\r') --end;
  line->assign(buf, 0, end);
  buf.erase(0, nl + 1);
  return true;
}

}  // namespace

std::string Answer::text() const {
  std::string out;
  for (const std::string& l : lines) absl::StrAppend(&out, l, "\n");
  return out;
}

AdminClient::AdminClient(AdminClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), pending_(std::move(other.pending_)) {}

AdminClient& AdminClient::operator=(AdminClient&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    pending_ = std::move(other.pending_);
  }
  return *this;
}

AdminClient::~AdminClient() {
  close();
}

void AdminClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::StatusOr<AdminClient> AdminClient::connect(const std::string& path,
                                                 std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(absl::StrCat("socket path '", path, "' is ", path.size(),
                                                   " bytes; at most ", sizeof addr.sun_path - 1,
                                                   " fit"));
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", errno_text(errno)));
  AdminClient client(fd);
  // A Unix connect blocks while the listener's backlog is full; SO_SNDTIMEO bounds that wait (and
  // the sends after it).
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int r;
  do {
    r = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  } while (r != 0 && errno == EINTR);
  if (r != 0) {
    const int err = errno;
    return absl::UnavailableError(
        err == EAGAIN ? std::string("timed out (the daemon does not accept connections)")
                      : errno_text(err));
  }
  return client;
}

absl::StatusOr<Answer> AdminClient::request(std::string_view command,
                                            std::chrono::milliseconds timeout) {
  if (fd_ < 0) return absl::UnavailableError("not connected");
  if (command.find('\n') != std::string_view::npos) {
    return absl::InvalidArgumentError("a command is one line");
  }
  const auto deadline = Clock::now() + timeout;
  const std::string line = absl::StrCat(std::string(command), "\n");
  size_t sent = 0;
  int send_error = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd_, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
    } else if (errno != EINTR) {
      // The daemon may have answered and closed already (e.g. `ERR busy`): read what it sent.
      send_error = errno;
      break;
    }
  }

  Answer answer;
  std::string text;
  for (;;) {
    while (take_line(pending_, &text)) {
      if (text == ".") return answer;
      if (answer.lines.empty() && text.rfind("ERR ", 0) == 0) answer.error = true;
      answer.lines.push_back(std::move(text));
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      close();
      return absl::DeadlineExceededError(absl::StrCat("no complete answer to '",
                                                      std::string(command.substr(0, 40)),
                                                      "' within ", timeout.count() / 1000.0, " s"));
    }
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) {
      const int err = errno;
      close();
      return absl::UnavailableError(absl::StrCat("poll: ", errno_text(err)));
    }
    if (ready <= 0) continue;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      pending_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int err = n < 0 ? errno : 0;
    close();
    // A daemon that refuses a client (`ERR busy`) may close right after its ERR line; that line
    // is still its answer.
    if (answer.error) return answer;
    if (!pending_.empty() && pending_.rfind("ERR ", 0) == 0) {
      answer.lines.push_back(pending_);
      answer.error = true;
      pending_.clear();
      return answer;
    }
    std::string why = "closed by the daemon";
    if (err != 0) why = absl::StrCat("receive: ", errno_text(err));
    if (send_error != 0) why = absl::StrCat("send: ", errno_text(send_error));
    return absl::UnavailableError(
        absl::StrCat("the connection closed before a complete answer (", why, ")"));
  }
}

}  // namespace reactord::ctl
