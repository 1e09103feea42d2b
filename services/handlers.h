// Builds the connection handler of a configured service, and the state services share across
// shards (each resp service's key space: one store per shard).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "services/connection.h"
#include "services/resp.h"

namespace reactord {

struct ServiceShared {
  std::vector<std::unique_ptr<RespShared>> resp;  // one per resp service
  std::function<std::string()> metrics_text;      // for http's /metrics; any shard thread
};

// The handler for `sc`, run by every shard. Main thread, before the shards start.
ConnectionHandler make_handler(const ServiceConfig& sc, ServiceShared& shared, size_t shards);

// Applies the services' reloadable settings that live in the shared state (each resp service's
// max_memory_bytes). Any thread.
void apply_service_settings(const std::vector<ServiceConfig>& services, ServiceShared& shared);

}  // namespace reactord
