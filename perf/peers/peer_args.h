// Command line of the peer echo servers: `NAME [--host ADDR] [--port N]` (port 0 or omitted: the
// OS picks one), and for epoll_echo `--idle-thread`. Each prints "listening PORT" on stdout once it
// accepts, so a script can wait.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace reactor::peers {

// Read size of every peer, the same as reactord's echo service (services/echo.cc).
inline constexpr size_t kReadSize = 16 * 1024;

struct PeerArgs {
  std::string host = "127.0.0.1";
  int port = 0;
  bool idle_thread = false;  // --idle-thread: start a second thread that only blocks
};

// idle_thread_flag: whether this server takes --idle-thread.
inline PeerArgs parse_peer_args(int argc, char** argv, bool idle_thread_flag = false) {
  PeerArgs a;
  for (int i = 1; i < argc; ++i) {
    if (idle_thread_flag && std::strcmp(argv[i], "--idle-thread") == 0) {
      a.idle_thread = true;
    } else if (i + 1 < argc && std::strcmp(argv[i], "--host") == 0) {
      a.host = argv[++i];
    } else if (i + 1 < argc && std::strcmp(argv[i], "--port") == 0) {
      a.port = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--host ADDR] [--port N]%s\n", argv[0],
                   idle_thread_flag ? " [--idle-thread]" : "");
      std::exit(64);
    }
  }
  return a;
}

inline void announce(int port) {
  std::printf("listening %d\n", port);
  std::fflush(stdout);
}

}  // namespace reactor::peers
