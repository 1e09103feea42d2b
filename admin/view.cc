#include "admin/view.h"

namespace reactord {

std::string DaemonView::active_backend() const {
  return shard_count() == 0 ? requested_backend() : std::string(shard_reactor(0).backend().name());
}

}  // namespace reactord
