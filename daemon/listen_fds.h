// Socket activation: the listening sockets systemd passed us ($LISTEN_FDS from fd 3, for
// $LISTEN_PID, named by $LISTEN_FDNAMES), matched to services and the admin socket by name.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config/config.h"

namespace reactord {

// Takes the passed fds (close-on-exec set) and unsets the three variables so children do not see
// them. Name → fds, one per socket (a second fd of the same socket under one name is closed);
// unnamed fds are called "unknown" as systemd does. Main thread, at start.
std::map<std::string, std::vector<int>> take_listen_fds();

// Whether listening socket `fd` is bound where `want` says (any port when want's is 0). Any
// thread.
bool listens_on(int fd, const ListenAddress& want);

// `fds` with one fd per socket (the first of each). Any thread.
std::vector<int> unique_sockets(const std::vector<int>& fds);

}  // namespace reactord
