// The seed's two examples on the fiber runtime, run by `make demo`; docs/asyncio.md shows them
// beside their asyncio versions (examples/seed_demo.py).
//  1. Two workers sleeping 2 s and 1 s under join_all finish in about 2 s, not 3 s.
//  2. A fiber that spins without suspending holds up every other fiber until it stops.
#include <cstdio>
#include <string>

#include "reactor/reactor.h"

using namespace std::chrono_literals;

namespace {

double seconds_since(reactor::Deadline start) {
  return std::chrono::duration<double>(reactor::Clock::now() - start).count();
}

void worker(const char* name, reactor::Duration d, reactor::Deadline start) {
  std::printf("%5.2f s  %s starting\n", seconds_since(start), name);
  (void)reactor::sleep_for(d);
  std::printf("%5.2f s  %s done\n", seconds_since(start), name);
}

}  // namespace

int main() {
  absl::Status s = reactor::Reactor::run([] {
    auto start = reactor::Clock::now();
    std::printf("-- cooperative: A sleeps 2 s, B sleeps 1 s, together\n");
    auto a = reactor::spawn("A", [=] { worker("A", 2s, start); });
    auto b = reactor::spawn("B", [=] { worker("B", 1s, start); });
    if (!a.ok() || !b.ok()) return;
    reactor::join_all(*a, *b);
    std::printf("%5.2f s  both done (the sum would be 3 s)\n\n", seconds_since(start));

    std::printf("-- a fiber that never suspends stalls the others\n");
    start = reactor::Clock::now();
    auto ticker = reactor::spawn("ticker", [=] {
      (void)reactor::sleep_for(10ms);
      std::printf("%5.2f s  10 ms timer fiber ran (it wanted 0.01 s)\n", seconds_since(start));
    });
    auto hog = reactor::spawn("hog", [=] {
      while (reactor::Clock::now() - start < 1s) {
      }
      std::printf("%5.2f s  hog stopped spinning\n", seconds_since(start));
    });
    if (!ticker.ok() || !hog.ok()) return;
    reactor::join_all(*ticker, *hog);
  });
  if (!s.ok()) {
    std::fprintf(stderr, "seed_demo: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
