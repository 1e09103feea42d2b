// reactor-uring-recv-bench: the measurement behind docs/backends.md's provided-buffer decision.
// Not a test. One reactor on one thread serves both ends of N loopback connections; each client
// writes a message of S bytes and reads the S-byte echo, again and again, for a fixed time. The
// receive path is chosen by the environment, as in production: REACTOR_URING_PROVIDED_BUFFERS=1
// makes recv go through the provided-buffer ring plus a copy, unset recv goes into the span.
//
//   reactor-uring-recv-bench [backend] [connections] [message bytes] [seconds]
//
// Prints messages/s and process CPU per message (both ends count: the loop does all the work).
#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "reactor/net.h"
#include "reactor/reactor.h"

namespace {

using reactor::Clock;
using reactor::deadline_after;
using reactor::TcpListener;
using reactor::TcpStream;

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string backend = argc > 1 ? argv[1] : "io_uring";
  const int connections = argc > 2 ? std::atoi(argv[2]) : 100;
  const size_t bytes = argc > 3 ? static_cast<size_t>(std::atol(argv[3])) : 64;
  const double seconds = argc > 4 ? std::atof(argv[4]) : 3.0;
  uint64_t messages = 0, measured = 0;
  double wall = 0, cpu = 0;
  std::string description;
  reactor::Reactor::Options options;
  options.backend = backend;
  absl::Status s = reactor::Reactor::run(
      [&] {
        auto listener = TcpListener::bind(*reactor::SocketAddress::parse_ip("127.0.0.1:0"));
        if (!listener.ok()) return;
        auto addr = listener->local_address();
        std::vector<reactor::Task<void>> tasks;
        bool stop = false;
        for (int i = 0; i < connections; ++i) {
          auto server = reactor::spawn("server", [&] {
            auto c = listener->accept();
            if (!c.ok()) return;
            std::vector<std::byte> buf(bytes);
            while (c->read_exact(buf).ok() && c->write_all(buf).ok()) {
            }
          });
          auto client = reactor::spawn("client", [&] {
            auto c = TcpStream::connect(*addr);
            if (!c.ok()) return;
            std::vector<std::byte> buf(bytes, std::byte{7});
            while (!stop && c->write_all(buf).ok() && c->read_exact(buf).ok()) ++messages;
          });
          if (server.ok()) tasks.push_back(*std::move(server));
          if (client.ok()) tasks.push_back(*std::move(client));
        }
        (void)reactor::sleep_for(std::chrono::milliseconds(200));  // warm up
        const uint64_t m0 = messages;
        const auto t0 = Clock::now();
        const double c0 = cpu_seconds();
        (void)reactor::sleep_for(
            std::chrono::duration_cast<reactor::Duration>(std::chrono::duration<double>(seconds)));
        measured = messages - m0;
        wall = std::chrono::duration<double>(Clock::now() - t0).count();
        cpu = cpu_seconds() - c0;
        stop = true;
        reactor::Reactor::current()->cancel_all();
        description = std::string(reactor::Reactor::current()->backend().name());
      },
      options);
  if (!s.ok()) {
    std::fprintf(stderr, "reactor-uring-recv-bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  const char* pbuf = std::getenv("REACTOR_URING_PROVIDED_BUFFERS");
  std::printf("%s%s conns=%d bytes=%zu: %.0f msg/s, %.2f us CPU/msg\n", description.c_str(),
              pbuf != nullptr && *pbuf != '\0' ? "+pbuf" : "", connections, bytes,
              static_cast<double>(measured) / wall, cpu / static_cast<double>(measured) * 1e6);
  return 0;
}
