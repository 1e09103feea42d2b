#include "services/handlers.h"

#include "services/echo.h"
#include "services/http.h"

namespace reactord {

ConnectionHandler make_handler(const ServiceConfig& sc, ServiceShared& shared, size_t shards) {
  const reactor::Duration idle = std::chrono::milliseconds(sc.idle_timeout_ms);
  switch (sc.kind) {
    case ServiceKind::kEcho:
      return [options = EchoOptions{idle}](Connection& c) { serve_echo(c, options); };
    case ServiceKind::kHttp: {
      HttpOptions o;
      o.idle_timeout = idle;
      o.header_timeout = std::chrono::milliseconds(sc.http.header_timeout_ms);
      o.max_header_bytes = sc.http.max_header_bytes;
      o.max_body_bytes = sc.http.max_body_bytes;
      o.debug_routes = sc.http.debug_routes;
      o.metrics_text = [&shared] {
        return shared.metrics_text ? shared.metrics_text() : std::string();
      };
      return [o = std::move(o)](Connection& c) { serve_http(c, o); };
    }
    case ServiceKind::kResp: {
      auto space = std::make_unique<RespShared>();
      space->service = sc.name;
      space->max_memory_bytes = sc.resp.max_memory_bytes;
      for (size_t i = 0; i < shards; ++i) space->stores.push_back(std::make_unique<RespStore>());
      RespShared* ks = space.get();
      shared.resp.push_back(std::move(space));
      RespOptions o;
      o.idle_timeout = idle;
      o.max_bulk_bytes = sc.resp.max_bulk_bytes;
      o.max_array_len = sc.resp.max_array_len;
      o.max_inline_bytes = sc.resp.max_inline_bytes;
      o.max_command_bytes = sc.resp.max_command_bytes;
      return [o, ks](Connection& c) { serve_resp(c, o, *ks); };
    }
  }
  return nullptr;
}

void apply_service_settings(const std::vector<ServiceConfig>& services, ServiceShared& shared) {
  for (const ServiceConfig& sc : services) {
    for (const auto& space : shared.resp) {
      if (space->service == sc.name) space->max_memory_bytes.store(sc.resp.max_memory_bytes);
    }
  }
}

}  // namespace reactord
