// An echo server on libreactor, built against the installed package (CMakeLists.txt here).
// Usage: reactor-echo [HOST:PORT] [BACKEND]   (default 127.0.0.1:7000, auto)
// Prints the backend it runs on, then echoes every connection in a fiber of its own until the
// peer closes or stays silent for a minute.
#include <cstdio>
#include <string>

#include "backends/registry.h"
#include "reactor/net.h"
#include "reactor/reactor.h"

using namespace std::chrono_literals;

namespace {

void echo(reactor::TcpStream conn) {
  std::byte buf[16384];
  for (;;) {
    auto n = conn.read(buf, reactor::deadline_after(60s));
    if (!n.ok() || *n == 0) return;
    if (!conn.write_all(std::span(buf, *n)).ok()) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string address = argc > 1 ? argv[1] : "127.0.0.1:7000";
  reactor::Reactor::Options options;
  options.backend = argc > 2 ? argv[2] : "auto";
  if (options.backend == "auto") options.backend = reactor::auto_backend_choice();
  auto parsed = reactor::SocketAddress::parse_ip(address);
  if (!parsed.ok()) {
    std::fprintf(stderr, "reactor-echo: %s\n", std::string(parsed.status().message()).c_str());
    return 64;
  }
  // Printed before the loop starts: no blocking write on the loop thread.
  std::printf("reactor-echo: serving %s on %s\n", address.c_str(), options.backend.c_str());
  std::fflush(stdout);
  absl::Status failure;  // why main() returned: the bind or the accept failed
  const absl::Status status = reactor::Reactor::run(
      [&] {
        auto listener = reactor::TcpListener::bind(*parsed);
        if (!listener.ok()) {
          failure = listener.status();
          return;
        }
        for (;;) {
          auto conn = listener->accept();
          if (!conn.ok()) {
            failure = conn.status();
            return;
          }
          (void)reactor::spawn("echo", [c = *std::move(conn)]() mutable { echo(std::move(c)); });
        }
      },
      options);
  for (const absl::Status& s : {status, failure}) {
    if (!s.ok()) {
      std::fprintf(stderr, "reactor-echo: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  return 0;
}
