// Builds the connection handler of a configured service, and the state services share across
// shards (the resp key space, one store per shard).
#pragma once

#include <cstddef>

#include "config/config.h"
#include "daemon/service.h"

namespace reactord {

struct ServiceShared {};

// The handler for `sc`, run by every shard. Main thread, before the shards start.
ConnectionHandler make_handler(const ServiceConfig& sc, ServiceShared& shared, size_t shards);

}  // namespace reactord
