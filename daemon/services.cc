#include "daemon/services.h"

#include "daemon/echo_service.h"

namespace reactord {

ConnectionHandler make_handler(const ServiceConfig& sc, ServiceShared& /*shared*/,
                               size_t /*shards*/) {
  const reactor::Duration idle = std::chrono::milliseconds(sc.idle_timeout_ms);
  switch (sc.kind) {
    case ServiceKind::kEcho:
      return [options = EchoOptions{idle}](Connection& c) { serve_echo(c, options); };
    case ServiceKind::kHttp:
    case ServiceKind::kResp:
      break;
  }
  return nullptr;
}

}  // namespace reactord
