#include "reactor/net.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "reactor/backend.h"
#include "reactor/error.h"
#include "reactor/reactor.h"

namespace reactor {
namespace {

Backend& backend() {
  return Reactor::current()->backend();
}

absl::StatusOr<FileDescriptor> make_socket(int family) {
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_status(errno, "socket");
  return FileDescriptor(fd);
}

absl::StatusOr<SocketAddress> name_of(int fd, bool peer) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
               : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) return errno_status(errno, peer ? "getpeername" : "getsockname", fd);
  return SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

absl::StatusOr<FileDescriptor> bind_listen(const SocketAddress& addr, ListenOptions options) {
  absl::StatusOr<FileDescriptor> fd = make_socket(addr.family());
  if (!fd.ok()) return fd.status();
  const int one = 1;
  if (addr.family() != AF_UNIX) {
    ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr.family() == AF_INET6) {
      // [::] takes IPv4 too (dual-stack, as Linux users expect); a specific address is v6-only.
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr.get());
      const int v6only = IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) ? 0 : 1;
      ::setsockopt(fd->get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (options.reuse_port &&
        ::setsockopt(fd->get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
      return errno_status(errno, "setsockopt(SO_REUSEPORT)", fd->get());
    }
  }
  if (::bind(fd->get(), addr.get(), addr.size()) != 0) {
    return errno_status(errno, absl::StrCat("bind ", addr.to_string()));
  }
  if (::listen(fd->get(), options.backlog) != 0) {
    return errno_status(errno, absl::StrCat("listen ", addr.to_string()));
  }
  return fd;
}

}  // namespace

// ---- SocketAddress ----

absl::StatusOr<SocketAddress> SocketAddress::parse_ip(std::string_view host_port) {
  std::string_view host, port;
  if (!host_port.empty() && host_port.front() == '[') {
    size_t close = host_port.find(']');
    if (close == std::string_view::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("bad address '", std::string(host_port), "': expected [v6]:port"));
    }
    host = host_port.substr(1, close - 1);
    port = host_port.substr(close + 2);
  } else {
    size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad address '", std::string(host_port), "': expected host:port"));
    }
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
  }
  uint32_t port_number = 0;
  if (!absl::SimpleAtoi(absl::string_view(port.data(), port.size()), &port_number) ||
      port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad port in '", std::string(host_port), "': expected 0-65535"));
  }
  SocketAddress a;
  const std::string h(host);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage_);
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port_number));
    a.len_ = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port_number));
    a.len_ = sizeof(sockaddr_in6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("bad host in '", std::string(host_port),
                                                   "': expected a numeric IPv4 or IPv6 address"));
  }
  return a;
}

absl::StatusOr<SocketAddress> SocketAddress::unix_path(std::string_view path) {
  SocketAddress a;
  auto* un = reinterpret_cast<sockaddr_un*>(&a.storage_);
  if (path.empty() || path.size() >= sizeof(un->sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path '", std::string(path),
                                                   "' must have 1 to ", sizeof(un->sun_path) - 1,
                                                   " bytes"));
  }
  un->sun_family = AF_UNIX;
  std::memcpy(un->sun_path, path.data(), path.size());
  a.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return a;
}

SocketAddress SocketAddress::from_sockaddr(const sockaddr* sa, socklen_t len) {
  SocketAddress a;
  if (len > sizeof a.storage_) len = sizeof a.storage_;
  std::memcpy(&a.storage_, sa, len);
  a.len_ = len;
  return a;
}

int SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  if (family() == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  }
  return 0;
}

std::string SocketAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, buf,
                sizeof buf);
    return absl::StrCat(buf, ":", port());
  }
  if (family() == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, buf,
                sizeof buf);
    return absl::StrCat("[", buf, "]:", port());
  }
  if (family() == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&storage_);
    return absl::StrCat("unix:", un->sun_path);
  }
  return "unspecified";
}

// ---- FileDescriptor ----

FileDescriptor& FileDescriptor::operator=(FileDescriptor&& o) noexcept {
  if (this != &o) {
    (void)close();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

absl::Status FileDescriptor::close() {
  if (fd_ < 0) return absl::OkStatus();
  const int fd = std::exchange(fd_, -1);
  if (Reactor* r = Reactor::current()) return r->backend().close(fd);
  if (::close(fd) != 0 && errno != EINTR) return errno_status(errno, "close", fd);
  return absl::OkStatus();
}

// ---- Stream ----

absl::Status Stream::read_exact(std::span<std::byte> buf, Deadline deadline) {
  size_t got = 0;
  while (got < buf.size()) {
    absl::StatusOr<size_t> n = backend().recv(fd_.get(), buf.subspan(got), deadline);
    if (!n.ok()) return n.status();
    if (*n == 0) {
      return absl::OutOfRangeError(absl::StrCat("read_exact on fd ", fd_.get(),
                                                ": stream ended after ", got, " of ", buf.size(),
                                                " bytes"));
    }
    got += *n;
  }
  return absl::OkStatus();
}

absl::Status Stream::write_rest(std::span<const std::byte> buf, absl::StatusOr<size_t> first,
                                Deadline deadline) {
  if (!first.ok()) return first.status();
  size_t sent = *first;
  while (sent < buf.size()) {
    absl::StatusOr<size_t> n = backend().send(fd_.get(), buf.subspan(sent), deadline);
    if (!n.ok()) return n.status();
    sent += *n;
  }
  return absl::OkStatus();
}

absl::Status Stream::shutdown_write() {
  // Bytes a backend still queues (io_uring's async_send) go before the FIN.
  if (absl::Status s = backend().flush(fd_.get(), kNoDeadline); !s.ok()) return s;
  if (::shutdown(fd_.get(), SHUT_WR) != 0) return errno_status(errno, "shutdown", fd_.get());
  return absl::OkStatus();
}

absl::StatusOr<SocketAddress> Stream::local_address() const {
  return name_of(fd_.get(), false);
}
absl::StatusOr<SocketAddress> Stream::peer_address() const {
  return name_of(fd_.get(), true);
}

absl::StatusOr<TcpStream> TcpStream::connect(const SocketAddress& addr, Deadline deadline) {
  if (addr.family() != AF_INET && addr.family() != AF_INET6) {
    return absl::InvalidArgumentError("TcpStream::connect needs an IPv4 or IPv6 address");
  }
  absl::StatusOr<FileDescriptor> fd = make_socket(addr.family());
  if (!fd.ok()) return fd.status();
  absl::Status s = backend().connect(fd->get(), addr.get(), addr.size(), deadline);
  if (!s.ok()) return s;
  TcpStream stream(*std::move(fd));
  (void)stream.set_nodelay(true);
  return stream;
}

absl::Status TcpStream::set_nodelay(bool on) {
  const int v = on ? 1 : 0;
  if (::setsockopt(fd(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0) {
    return errno_status(errno, "setsockopt(TCP_NODELAY)", fd());
  }
  return absl::OkStatus();
}

absl::StatusOr<UnixStream> UnixStream::connect(const SocketAddress& addr, Deadline deadline) {
  if (addr.family() != AF_UNIX) {
    return absl::InvalidArgumentError("UnixStream::connect needs a Unix socket path");
  }
  absl::StatusOr<FileDescriptor> fd = make_socket(AF_UNIX);
  if (!fd.ok()) return fd.status();
  absl::Status s = backend().connect(fd->get(), addr.get(), addr.size(), deadline);
  if (!s.ok()) return s;
  return UnixStream(*std::move(fd));
}

// ---- listeners ----

absl::StatusOr<TcpListener> TcpListener::bind(const SocketAddress& addr, ListenOptions options) {
  if (addr.family() != AF_INET && addr.family() != AF_INET6) {
    return absl::InvalidArgumentError("TcpListener::bind needs an IPv4 or IPv6 address");
  }
  absl::StatusOr<FileDescriptor> fd = bind_listen(addr, options);
  if (!fd.ok()) return fd.status();
  TcpListener l;
  l.fd_ = *std::move(fd);
  return l;
}

absl::StatusOr<TcpStream> TcpListener::accept(Deadline deadline, SocketAddress* peer) {
  sockaddr_storage ss{};
  absl::StatusOr<int> fd = backend().accept(fd_.get(), &ss, deadline);
  if (!fd.ok()) return fd.status();
  if (peer != nullptr) {
    *peer = SocketAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), sizeof ss);
  }
  TcpStream stream{FileDescriptor(*fd)};
  (void)stream.set_nodelay(true);
  return stream;
}

absl::StatusOr<SocketAddress> TcpListener::local_address() const {
  return name_of(fd_.get(), false);
}

absl::StatusOr<UnixListener> UnixListener::bind(const SocketAddress& addr, ListenOptions options) {
  if (addr.family() != AF_UNIX) {
    return absl::InvalidArgumentError("UnixListener::bind needs a Unix socket path");
  }
  absl::StatusOr<FileDescriptor> fd = bind_listen(addr, options);
  if (!fd.ok()) return fd.status();
  UnixListener l;
  l.fd_ = *std::move(fd);
  return l;
}

absl::StatusOr<UnixStream> UnixListener::accept(Deadline deadline) {
  absl::StatusOr<int> fd = backend().accept(fd_.get(), nullptr, deadline);
  if (!fd.ok()) return fd.status();
  return UnixStream(FileDescriptor(*fd));
}

}  // namespace reactor
