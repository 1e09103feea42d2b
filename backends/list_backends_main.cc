// reactor-backends: prints every backend this build knows, whether it can run here and why not,
// and what `auto` picks. Exit status 0 when at least one backend is available, 1 otherwise.
#include <cstdio>

#include "backends/registry.h"

int main() {
  const std::vector<reactor::BackendInfo> backends = reactor::list_backends();
  std::fputs(reactor::format_backend_table(backends).c_str(), stdout);
  for (const reactor::BackendInfo& b : backends) {
    if (b.available) return 0;
  }
  return 1;
}
