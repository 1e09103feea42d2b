// Inside the resp service: one client connection as its command handlers see it, the reply
// writers, and the command table's shape. Only services/resp*.cc include this.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/call_on.h"
#include "services/resp.h"
#include "services/resp_parser.h"

namespace reactord::resp {

// The Redis version reported by HELLO and INFO: the one whose commands and replies this follows.
inline constexpr std::string_view kRespRedisVersion = "7.0.0";

// Error lines quote at most this much of what the client sent.
inline constexpr size_t kMaxQuoted = 128;

// A command's arguments, its name first.
using Args = std::span<const std::string_view>;

// Reply writers: append one RESP2 value to out. Any thread.
// Text from a client made safe for an error line: no CR or LF, at most `max` bytes.
void append_quoted(std::string& out, std::string_view s, size_t max);
void append_simple(std::string& out, std::string_view s);
void append_error(std::string& out, std::string_view s);
void append_int(std::string& out, int64_t v);
void append_bulk(std::string& out, std::string_view s);
void append_nil(std::string& out);
void append_array_header(std::string& out, size_t n);
// Redis' string2ll rules: optional '-', no '+', no leading zeros, no spaces, fits int64.
bool parse_strict_int64(std::string_view s, int64_t* out);
// ASCII case-insensitive equality.
bool equals_nocase(std::string_view a, std::string_view b);
std::string to_lower(std::string_view s);

// What running fn on a shard gives back: fn's value, or why the shard did not answer.
template <class R>
using ShardResult = std::conditional_t<std::is_void_v<R>, absl::Status, absl::StatusOr<R>>;

// One client connection: reads commands, runs them through the command table, writes the replies.
// Every method: the connection's shard's loop thread, inside the connection's fiber.
class RespConnection {
 public:
  RespConnection(Connection& c, const RespOptions& o, RespShared& shared);
  ~RespConnection();

  void run();

  // For the command handlers. The reply buffer: a handler appends its reply here.
  std::string& out() { return out_; }
  size_t shard_count() const { return c_.shard().count; }
  size_t shard_index() const { return c_.shard().index; }
  RespShared& shared() { return shared_; }
  const RespOptions& options() const { return o_; }
  // This shard's store, for its per-shard stats.
  RespStore& local_store() { return *shared_.stores[c_.shard().index]; }
  uint64_t id() const { return id_; }
  std::string& name() { return client_name_; }
  // Runs fn(store) on shard `shard`'s loop (inline on this one) and returns its value. fn must
  // not suspend, and owns what it uses: it may outlive this wait (deadline, cancel).
  template <class F, class R = std::invoke_result_t<F&, RespStore&>>
  ShardResult<R> on_shard(size_t shard, F fn);
  // Runs fn(store, key) on the shard owning key, as on_shard(). fn gets the key as a
  // std::string_view when this shard owns it, as a std::string&& (a copy it may keep) otherwise.
  template <class F, class R = std::invoke_result_t<F&, RespStore&, std::string_view>>
  ShardResult<R> on_owner(std::string_view key, F fn);
  // Replies with why a call to another shard failed; false if the connection must close.
  bool shard_failure(const absl::Status& s);

 private:
  // Executes one command into out_; false when the connection closes after it.
  bool execute(Args args);
  bool flush() { return c_.flush(out_, o_.idle_timeout); }

  Connection& c_;
  const RespOptions& o_;
  RespShared& shared_;
  RespParser parser_;
  RespCommand cmd_;
  std::string out_;
  std::string lower_;  // the command's name in lower case
  std::string client_name_;
  const uint64_t id_;
};

template <class F, class R>
ShardResult<R> RespConnection::on_shard(size_t shard, F fn) {
  RespStore& store = *shared_.stores[shard];
  if (shard == c_.shard().index) {
    if constexpr (std::is_void_v<R>) {
      fn(store);
      return absl::OkStatus();
    } else {
      return fn(store);
    }
  }
  return reactor::call_on(
      *c_.shard().reactors[shard], [&store, fn = std::move(fn)]() mutable { return fn(store); },
      timeout_deadline(o_.idle_timeout));
}

template <class F, class R>
ShardResult<R> RespConnection::on_owner(std::string_view key, F fn) {
  const size_t owner = resp_key_owner(key, c_.shard().count);
  if (owner == c_.shard().index) {
    return on_shard(owner, [&fn, key](RespStore& s) -> R { return fn(s, key); });
  }
  // The call may outlive this wait: it owns a copy of the key.
  return on_shard(owner, [fn = std::move(fn), k = std::string(key)](RespStore& s) mutable -> R {
    return fn(s, std::move(k));
  });
}

// A handler runs a command whose argument count the table accepted: it appends the reply to
// c.out() and returns false when the connection closes after it.
using Handler = bool (*)(RespConnection&, Args);

inline constexpr size_t kAnyArgs = std::numeric_limits<size_t>::max();

enum CommandFlags : uint8_t {
  kReadonly = 1,
  kWrite = 2,    // may grow the store: refused past max_memory_bytes (Redis' "denyoom")
  kNoKeys = 4,   // no key arguments
  kAllKeys = 8,  // every argument from the first is a key (DEL, EXISTS, MGET)
  kPairs = 16,   // key value pairs (MSET)
};

struct CommandSpec {
  std::string_view name;  // lower case
  size_t min_args;        // argument counts accepted, the name included
  size_t max_args;
  Handler handler;
  uint8_t flags;
};

// The command tables, by family (resp_commands.cc: strings and keys; resp.cc: the rest).
std::span<const CommandSpec> key_commands();
std::span<const CommandSpec> connection_commands();

}  // namespace reactord::resp
