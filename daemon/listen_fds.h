// Socket activation: the listening sockets systemd passed us ($LISTEN_FDS from fd 3, for
// $LISTEN_PID, named by $LISTEN_FDNAMES), matched to services and the admin socket by name.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace reactord {

// Takes the passed fds (close-on-exec set) and unsets the three variables so children do not see
// them. Name → fds; unnamed fds are called "unknown" as systemd does. Main thread, at start.
std::map<std::string, std::vector<int>> take_listen_fds();

}  // namespace reactord
