// The README's example: a TCP echo server on fibers. Kept compiling so the README stays true.
#include "reactor/net.h"
#include "reactor/reactor.h"
using namespace std::chrono_literals;

int main() {
  // asyncio.run(main()): a reactor on this thread, main() in a fiber, until it returns.
  return reactor::Reactor::run([] {
           auto listener =
               reactor::TcpListener::bind(*reactor::SocketAddress::parse_ip("127.0.0.1:7000"));
           if (!listener.ok()) return;
           for (;;) {
             auto conn = listener->accept();  // suspends this fiber, not the loop
             if (!conn.ok()) break;
             (void)reactor::spawn("echo", [c = *std::move(conn)]() mutable {
               std::byte buf[4096];
               for (;;) {
                 auto n = c.read(buf, reactor::deadline_after(30s));  // every wait takes a deadline
                 if (!n.ok() || *n == 0 || !c.write_all(std::span(buf, *n)).ok()) break;
               }
             });
           }
         }).ok()
             ? 0
             : 1;
}
