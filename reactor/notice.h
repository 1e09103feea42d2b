// Notices: recoverable conditions the runtime reports rather than returns — the `auto` backend
// falling back to epoll, an optional io_uring feature that could not be set up. The runtime never
// writes them to stderr behind the process's logger: the process routes them with
// set_notice_sink() (reactord: to its log as warnings). Until it does, they go to stderr, one line
// each prefixed "reactor: ", so tools without a logger (reactor-backends) still say them.
#pragma once

#include <string_view>

namespace reactor {

// Receives one notice (no trailing newline). Called on the thread that noticed, often a loop
// thread: it must not block (an asynchronous logger), and it may be called from several threads.
using NoticeSink = void (*)(std::string_view message);

// Routes every later notice to `sink`; null restores stderr. Any thread.
void set_notice_sink(NoticeSink sink);

// Reports `message` through the sink. Any thread.
void notice(std::string_view message);

}  // namespace reactor
