// Sockets on fibers: TCP (IPv4, IPv6) and Unix stream listeners and streams. Every call that can
// wait suspends the calling fiber (never the loop) and takes a deadline. An object belongs to the
// reactor of the thread that made it: loop thread only. Closing goes through the backend, so an
// operation still pending on the fd is resumed with an error.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/backend.h"
#include "reactor/time.h"

namespace reactor {

namespace detail {
// The backend of the reactor on this thread (null without one), so that a stream's I/O is one
// virtual call. Set by the reactor.
extern constinit thread_local Backend* t_loop_backend;
}  // namespace detail

// An IPv4, IPv6 or Unix-domain socket address.
class SocketAddress {
 public:
  SocketAddress() = default;
  // "127.0.0.1:8080", "[::1]:0", "localhost:80" is not accepted (no DNS on the loop): numeric only.
  static absl::StatusOr<SocketAddress> parse_ip(std::string_view host_port);
  static absl::StatusOr<SocketAddress> unix_path(std::string_view path);
  static SocketAddress from_sockaddr(const sockaddr* sa, socklen_t len);

  int family() const { return storage_.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t size() const { return len_; }
  int port() const;               // 0 for Unix addresses
  std::string to_string() const;  // "127.0.0.1:80", "[::1]:80", "unix:/path"

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

// An owned file descriptor, closed through the current reactor's backend.
class FileDescriptor {
 public:
  FileDescriptor() = default;
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(FileDescriptor&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  FileDescriptor& operator=(FileDescriptor&& o) noexcept;
  ~FileDescriptor() { (void)close(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  absl::Status close();

 private:
  int fd_ = -1;
};

// A connected stream socket (TCP or Unix).
class Stream {
 public:
  Stream() = default;
  explicit Stream(FileDescriptor fd) : fd_(std::move(fd)) {}

  // Up to buf.size() bytes; 0 at end of stream.
  absl::StatusOr<size_t> read(std::span<std::byte> buf, Deadline deadline = kNoDeadline);
  // Exactly buf.size() bytes, or OutOfRange if the stream ends first.
  absl::Status read_exact(std::span<std::byte> buf, Deadline deadline = kNoDeadline);
  // Some of buf (at least one byte unless buf is empty).
  absl::StatusOr<size_t> write(std::span<const std::byte> buf, Deadline deadline = kNoDeadline);
  // All of buf.
  absl::Status write_all(std::span<const std::byte> buf, Deadline deadline = kNoDeadline);
  absl::Status write_all(std::string_view s, Deadline deadline = kNoDeadline) {
    return write_all(std::as_bytes(std::span(s.data(), s.size())), deadline);
  }
  // Half-close: the peer reads end of stream; reading here goes on.
  absl::Status shutdown_write();
  absl::Status close() { return fd_.close(); }

  int fd() const { return fd_.get(); }
  absl::StatusOr<SocketAddress> local_address() const;
  absl::StatusOr<SocketAddress> peer_address() const;

 private:
  // write_all after a first send that failed or sent less than all of buf.
  absl::Status write_rest(std::span<const std::byte> buf, absl::StatusOr<size_t> first,
                          Deadline deadline);

  FileDescriptor fd_;
};

class TcpStream : public Stream {
 public:
  using Stream::Stream;
  static absl::StatusOr<TcpStream> connect(const SocketAddress& addr,
                                           Deadline deadline = kNoDeadline);
  absl::Status set_nodelay(bool on);
};

class UnixStream : public Stream {
 public:
  using Stream::Stream;
  static absl::StatusOr<UnixStream> connect(const SocketAddress& addr,
                                            Deadline deadline = kNoDeadline);
};

struct ListenOptions {
  int backlog = 1024;
  bool reuse_port = false;  // SO_REUSEPORT: one listener per shard on the same port
};

class TcpListener {
 public:
  static absl::StatusOr<TcpListener> bind(const SocketAddress& addr, ListenOptions options = {});
  absl::StatusOr<TcpStream> accept(Deadline deadline = kNoDeadline, SocketAddress* peer = nullptr);
  absl::StatusOr<SocketAddress> local_address() const;
  int fd() const { return fd_.get(); }
  absl::Status close() { return fd_.close(); }

 private:
  FileDescriptor fd_;
};

class UnixListener {
 public:
  // Binds a Unix stream socket at addr's path (which must not exist).
  static absl::StatusOr<UnixListener> bind(const SocketAddress& addr, ListenOptions options = {});
  absl::StatusOr<UnixStream> accept(Deadline deadline = kNoDeadline);
  int fd() const { return fd_.get(); }
  absl::Status close() { return fd_.close(); }

 private:
  FileDescriptor fd_;
};

// ---- implementation: the calls every request makes, inline down to the backend's ----

inline absl::StatusOr<size_t> Stream::read(std::span<std::byte> buf, Deadline deadline) {
  return detail::t_loop_backend->recv(fd_.get(), buf, deadline);
}

inline absl::StatusOr<size_t> Stream::write(std::span<const std::byte> buf, Deadline deadline) {
  return detail::t_loop_backend->send(fd_.get(), buf, deadline);
}

inline absl::Status Stream::write_all(std::span<const std::byte> buf, Deadline deadline) {
  if (buf.empty()) return absl::OkStatus();
  absl::StatusOr<size_t> n = detail::t_loop_backend->send(fd_.get(), buf, deadline);
  if (n.ok() && *n == buf.size()) [[likely]] {
    return absl::OkStatus();
  }
  return write_rest(buf, std::move(n), deadline);
}

}  // namespace reactor
