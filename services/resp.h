// The resp service: a small Redis-compatible key-value store over RESP2 (services/resp_parser.h),
// enough for redis-cli and redis-benchmark. Commands (names case-insensitive):
//   PING [msg], ECHO msg, SET key value, GET key, DEL key [key ...], EXISTS key [key ...],
//   INCR key, DBSIZE, COMMAND (an empty array), QUIT (+OK, then close)
// Errors follow Redis' wording: `-ERR unknown command 'x', ...`, `-ERR wrong number of arguments
// for 'get' command`, `-ERR value is not an integer or out of range`. A protocol error (limits
// included) is answered with `-ERR Protocol error: ...` and closes the connection.
//
// Shared-nothing: every key is owned by one shard, resp_key_owner(key, shards); each shard has
// its own RespStore, touched only on that shard's loop thread. A command on another shard's key
// runs there through reactor::call_on (a function on that loop, no fiber, no suspension) and
// comes back with the reply's value. DBSIZE asks every shard.
//
// Pipelined commands are answered in order and their replies written together. On drain, the
// commands already received are answered, then the connection closes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "reactor/thread_check.h"
#include "reactor/time.h"
#include "services/connection.h"

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

// One shard's keys. Built on any thread; every method: the owning shard's loop thread, which is
// the first thread to call one (debug builds check that no other thread does).
class RespStore {
 public:
  std::optional<std::string> get(std::string_view key) const;
  void set(std::string key, std::string value);
  // True if the key existed.
  bool erase(std::string_view key);
  bool contains(std::string_view key) const;
  // Adds one to the integer stored at key (0 if absent): the new value, InvalidArgument if the
  // value is not an integer, OutOfRange if it would overflow.
  absl::StatusOr<int64_t> incr(std::string_view key);
  size_t size() const;

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };

  std::unordered_map<std::string, std::string, Hash, std::equal_to<>> map_;
  reactor::LoopThreadCheck loop_thread_{"RespStore", reactor::LoopThreadCheck::FirstUse{}};
};

// One store per shard, by shard index; created before the shards start, never resized.
struct RespShared {
  std::vector<std::unique_ptr<RespStore>> stores;
};

// The shard that owns key: a stable hash (64-bit FNV-1a) of the key modulo shards. Any thread.
size_t resp_key_owner(std::string_view key, size_t shards);

// Serves one connection until the peer closes, QUIT, a protocol error, the idle timeout or drain.
// Loop thread of the connection's shard, inside the connection's fiber. shared.stores.size() must
// equal c.shard().count.
void serve_resp(Connection& c, const RespOptions& o, RespShared& shared);

}  // namespace reactord
