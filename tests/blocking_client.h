// Blocking clients for the tests that run against a real server (the reactord binary, or a fake
// server on a plain socket): plain system calls with timeouts, so they depend on nothing of the
// runtime under test and never hang a test.
//
// A signal to the test process (SIGCHLD when a daemon or a reactorctl child exits) interrupts a
// send or recv blocked under SO_SNDTIMEO/SO_RCVTIMEO with EINTR even with SA_RESTART; every call
// here retries then.
//
// Any thread; a client is used by one thread at a time, except that one thread may send while
// another receives.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace reactor::test {

// The port of "host:port" ("127.0.0.1:4242", "[::1]:80").
inline uint16_t port_of(const std::string& host_port) {
  return static_cast<uint16_t>(std::stoi(host_port.substr(host_port.rfind(':') + 1)));
}

// One stream connection with send and receive timeouts.
class BlockingClient {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout{10000};

  BlockingClient() = default;
  // TCP to 127.0.0.1 at the port of `host_port`.
  explicit BlockingClient(const std::string& host_port,
                          std::chrono::milliseconds timeout = kDefaultTimeout) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_of(host_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    open(AF_INET, reinterpret_cast<const sockaddr*>(&a), sizeof a, timeout);
  }
  // The Unix stream socket at `path`; a zero timeout sets none (reads then wait with poll).
  static BlockingClient unix_stream(const std::string& path,
                                    std::chrono::milliseconds timeout = kDefaultTimeout) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    BlockingClient c;
    c.open(AF_UNIX, reinterpret_cast<const sockaddr*>(&a), sizeof a, timeout);
    return c;
  }

  BlockingClient(BlockingClient&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)),
        connected_(std::exchange(o.connected_, false)),
        error_(o.error_) {}
  BlockingClient& operator=(BlockingClient&& o) noexcept {
    if (this != &o) {
      close();
      fd_ = std::exchange(o.fd_, -1);
      connected_ = std::exchange(o.connected_, false);
      error_ = o.error_;
    }
    return *this;
  }
  ~BlockingClient() { close(); }

  bool connected() const { return connected_; }
  // The errno of a failed socket() or connect(), else 0.
  int error() const { return error_; }
  int fd() const { return fd_; }

  // Sets SO_RCVTIMEO and SO_SNDTIMEO.
  void set_timeout(std::chrono::milliseconds t) {
    timeval tv{static_cast<time_t>(t.count() / 1000),
               static_cast<suseconds_t>(t.count() % 1000) * 1000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  // Sends all of `s`; false if the peer closed, an error or the timeout came first.
  bool send_all(std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Sends without blocking as much of `s` as the socket takes; returns how much.
  size_t send_some(std::string_view s) {
    const ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    return n > 0 ? static_cast<size_t>(n) : 0;
  }

  // One recv appended to *out: the byte count, 0 when the peer closed, -1 on error or timeout.
  ssize_t recv_some(std::string* out, size_t max = 16384) {
    const size_t at = out->size();
    out->resize(at + max);
    ssize_t n;
    do {
      n = ::recv(fd_, out->data() + at, max, 0);
    } while (n < 0 && errno == EINTR);
    out->resize(at + static_cast<size_t>(n > 0 ? n : 0));
    return n;
  }
  // Reads exactly n bytes (fewer if the peer closes, fails or the timeout passes).
  std::string recv_exact(size_t n) {
    std::string got;
    while (got.size() < n && recv_some(&got, n - got.size()) > 0) {
    }
    return got;
  }
  // Reads until the peer closes (true) or an error or the timeout (false); appends to *out.
  bool recv_to_eof(std::string* out) {
    for (;;) {
      const ssize_t n = recv_some(out);
      if (n == 0) return true;
      if (n < 0) return false;
    }
  }
  // Everything until the peer closes, an error or the timeout.
  std::string recv_all() {
    std::string got;
    (void)recv_to_eof(&got);
    return got;
  }
  // Reads until `marker` has arrived `count` times, the peer closes, or the timeout passes.
  std::string recv_until(std::string_view marker, int count = 1) {
    std::string got;
    for (;;) {
      int seen = 0;
      for (size_t at = got.find(marker); at != std::string::npos;
           at = got.find(marker, at + marker.size()))
        ++seen;
      if (seen >= count || recv_some(&got) <= 0) return got;
    }
  }

  bool shutdown_write() { return ::shutdown(fd_, SHUT_WR) == 0; }
  // Closes with SO_LINGER 0: the peer gets a reset, not a FIN.
  void reset() {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
  }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    connected_ = false;
  }
  // True if the peer closes (FIN or reset) within `timeout`, reading and dropping what it sends.
  bool closed_within(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    }
    return false;
  }

 private:
  void open(int family, const sockaddr* addr, socklen_t len, std::chrono::milliseconds timeout) {
    fd_ = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      error_ = errno;
      return;
    }
    if (timeout.count() > 0) set_timeout(timeout);
    int r;
    do {
      r = ::connect(fd_, addr, len);
    } while (r != 0 && errno == EINTR);
    connected_ = r == 0;
    if (!connected_) error_ = errno;
  }

  int fd_ = -1;
  bool connected_ = false;
  int error_ = 0;
};

// Sends `payload` to an echo service from a second thread, half-closes, and returns what came
// back until the server closed. `connect_for` > 0 retries a refused connect that long (a
// socket-activated listener may not exist yet).
inline std::string echo_through(const std::string& host_port, std::string_view payload,
                                std::chrono::milliseconds timeout = std::chrono::seconds(30),
                                std::chrono::milliseconds connect_for = {}) {
  const auto give_up = std::chrono::steady_clock::now() + connect_for;
  BlockingClient c(host_port, timeout);
  while (!c.connected() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    c = BlockingClient(host_port, timeout);
  }
  if (!c.connected()) return "";
  std::thread writer([&] {
    (void)c.send_all(payload);
    (void)c.shutdown_write();
  });
  std::string got = c.recv_all();
  writer.join();
  return got;
}

// A client of the admin socket's line protocol (docs/admin-protocol.md): a command line out, the
// answer's lines back up to the "." line that ends each answer. Reads wait with poll until a
// deadline; the socket itself has no timeouts.
class AdminClient {
 public:
  explicit AdminClient(const std::string& path)
      : c_(BlockingClient::unix_stream(path, std::chrono::milliseconds(0))) {}

  bool ok() const { return c_.connected(); }
  // The errno of a failed connect.
  int error() const { return c_.error(); }
  int fd() const { return c_.fd(); }

  bool send(std::string_view data) { return c_.send_all(data); }

  // The next answer's lines (without the end marker); nullopt on timeout or close.
  std::optional<std::vector<std::string>> answer(
      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<std::string> lines;
    for (;;) {
      size_t nl;
      while ((nl = buf_.find('\n')) != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (line == ".") return lines;
        lines.push_back(std::move(line));
      }
      if (!fill(deadline)) return std::nullopt;
    }
  }

  // Sends `command` and returns its answer's lines.
  std::optional<std::vector<std::string>> ask(
      const std::string& command, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    if (!send(command + "\n")) return std::nullopt;
    return answer(timeout);
  }

  // The answer's text, each line ending in '\n'; "" on failure.
  std::string ask_text(const std::string& command) {
    auto a = ask(command);
    if (!a) return "";
    std::string out;
    for (const auto& l : *a) out += l + "\n";
    return out;
  }

  // True when the server closes the connection within `timeout` (data before it is kept).
  bool wait_closed(std::chrono::milliseconds timeout, std::string* data = nullptr) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (fill(deadline)) {
    }
    if (data) *data = buf_;
    return closed_;
  }

 private:
  // Reads more into buf_; false on timeout, close or error.
  bool fill(std::chrono::steady_clock::time_point deadline) {
    if (!c_.connected() || closed_) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{c_.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      return std::chrono::steady_clock::now() < deadline;
    }
    if (c_.recv_some(&buf_, 65536) > 0) return true;
    closed_ = true;
    return false;
  }

  BlockingClient c_;
  bool closed_ = false;
  std::string buf_;
};

// Sends one command line to the admin socket at `path`; returns the answer's lines joined with
// '\n' (no end marker), or nullopt on failure.
inline std::optional<std::string> admin_query(
    const std::string& path, const std::string& line,
    std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  AdminClient a(path);
  if (!a.ok()) return std::nullopt;
  std::optional<std::vector<std::string>> lines = a.ask(line, timeout);
  if (!lines) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < lines->size(); ++i) out += (i ? "\n" : "") + (*lines)[i];
  return out;
}

}  // namespace reactor::test
