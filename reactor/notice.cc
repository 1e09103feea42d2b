#include "reactor/notice.h"

#include <atomic>
#include <cstdio>

namespace reactor {
namespace {

std::atomic<NoticeSink> g_sink{nullptr};

}  // namespace

void set_notice_sink(NoticeSink sink) {
  g_sink.store(sink, std::memory_order_release);
}

void notice(std::string_view message) {
  if (NoticeSink sink = g_sink.load(std::memory_order_acquire)) {
    sink(message);
    return;
  }
  std::fprintf(stderr, "reactor: %.*s\n", static_cast<int>(message.size()), message.data());
}

}  // namespace reactor
