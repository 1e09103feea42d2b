// A single-threaded TCP echo server on (standalone) Asio: the classic async_read_some /
// async_write chain per connection, one io_context told it has one thread, the same 16 KiB read
// buffer as the other peers.
#include <asio.hpp>
#include <cstdio>
#include <memory>

#include "perf/peers/peer_args.h"

namespace {

using asio::ip::tcp;

class Session : public std::enable_shared_from_this<Session> {
 public:
  explicit Session(tcp::socket socket) : socket_(std::move(socket)) {}

  void start() {
    socket_.set_option(tcp::no_delay(true));
    read();
  }

 private:
  void read() {
    socket_.async_read_some(asio::buffer(buf_),
                            [self = shared_from_this()](std::error_code ec, size_t n) {
                              if (!ec) self->write(n);
                            });
  }
  void write(size_t n) {
    asio::async_write(socket_, asio::buffer(buf_, n),
                      [self = shared_from_this()](std::error_code ec, size_t) {
                        if (!ec) self->read();
                      });
  }

  tcp::socket socket_;
  char buf_[reactor::peers::kReadSize];
};

void accept(tcp::acceptor& acceptor) {
  acceptor.async_accept([&acceptor](std::error_code ec, tcp::socket socket) {
    if (!ec) std::make_shared<Session>(std::move(socket))->start();
    accept(acceptor);
  });
}

}  // namespace

int main(int argc, char** argv) {
  const reactor::peers::PeerArgs args = reactor::peers::parse_peer_args(argc, argv);
  asio::io_context io(1);
  tcp::acceptor acceptor(io);
  const tcp::endpoint ep(asio::ip::make_address(args.host), static_cast<unsigned short>(args.port));
  std::error_code ec;
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(4096, ec);
  if (ec) {
    std::fprintf(stderr, "asio_echo: bind/listen: %s\n", ec.message().c_str());
    return 71;
  }
  reactor::peers::announce(acceptor.local_endpoint().port());
  accept(acceptor);
  io.run();
}
