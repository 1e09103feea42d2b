// The resp service: a small Redis-compatible key-value store over RESP2 (services/resp_parser.h)
// with the string and key commands clients send, expiry, a memory cap and INFO; docs/services.md
// lists the commands. Replies and errors use Redis 7.0's wording. A protocol error (limits
// included) is answered with `-ERR Protocol error: ...` and closes the connection.
//
// The pieces: resp_store.h (one shard's keys and expiry), resp_connection.h (a connection as the
// command handlers see it), resp_commands.cc (string and key commands), resp.cc (the rest).
//
// Shared-nothing: every key is owned by one shard, resp_key_owner(key, shards); each shard has
// its own RespStore, touched only on that shard's loop thread. A command on another shard's key
// runs there through reactor::call_on (a function on that loop, no fiber, no suspension) and
// comes back with the reply. DBSIZE, KEYS, SCAN and the flushes visit every shard.
//
// Pipelined commands are answered in order and their replies written together. On drain, the
// commands already received are answered, then the connection closes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reactor/time.h"
#include "services/connection.h"
#include "services/resp_store.h"

namespace reactord {

struct RespOptions {
  // How long a connection may wait for its next command (or a write may stall). Zero or less: no
  // limit.
  reactor::Duration idle_timeout = std::chrono::seconds(60);
  size_t max_bulk_bytes = 1024 * 1024;
  size_t max_array_len = 1024;
  size_t max_inline_bytes = 64 * 1024;
  size_t max_command_bytes = 8 * 1024 * 1024;
};

// One store per shard, by shard index; created before the shards start, never resized.
struct RespShared {
  std::string service;  // the service's name
  std::vector<std::unique_ptr<RespStore>> stores;
  // The cap on the sum of the stores' used_memory(); 0: none. Reloadable: any thread writes it.
  std::atomic<uint64_t> max_memory_bytes{0};
  std::atomic<uint64_t> next_client_id{1};  // CLIENT ID
  reactor::Deadline started = reactor::Clock::now();

  // The sum of the stores' used_memory(). Any thread.
  uint64_t used_memory() const;
};

// The shard that owns key: a stable hash (64-bit FNV-1a) of the key modulo shards. Any thread.
size_t resp_key_owner(std::string_view key, size_t shards);

// Serves one connection until the peer closes, QUIT, a protocol error, the idle timeout or drain.
// Loop thread of the connection's shard, inside the connection's fiber. shared.stores.size() must
// equal c.shard().count.
void serve_resp(Connection& c, const RespOptions& o, RespShared& shared);

}  // namespace reactord
