#include "services/resp.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <span>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "reactor/call_on.h"
#include "services/resp_parser.h"

namespace reactord {
namespace {

// Unknown-command errors quote at most this much of the command.
constexpr size_t kMaxQuoted = 128;

// Redis' string2ll rules: optional '-', no '+', no leading zeros, no spaces, fits int64.
bool parse_strict_int64(std::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  if (s == "0") {
    *out = 0;
    return true;
  }
  bool negative = false;
  if (s.front() == '-') {
    negative = true;
    s.remove_prefix(1);
  }
  if (s.empty() || s.front() < '1' || s.front() > '9') return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  const uint64_t max_pos = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (negative) {
    if (v > max_pos + 1) return false;
    *out = v == max_pos + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(v);
  } else {
    if (v > max_pos) return false;
    *out = static_cast<int64_t>(v);
  }
  return true;
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

// Text from a client made safe for an error line: no CR or LF, at most `max` bytes.
void append_quoted(std::string& out, std::string_view s, size_t max) {
  if (s.size() > max) s = s.substr(0, max);
  for (char c : s) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
}

void append_simple(std::string& out, std::string_view s) {
  out.push_back('+');
  out.append(s);
  out.append("\r\n");
}
void append_error(std::string& out, std::string_view s) {
  out.push_back('-');
  out.append(s);
  out.append("\r\n");
}
void append_int(std::string& out, int64_t v) {
  out.push_back(':');
  out.append(std::to_string(v));
  out.append("\r\n");
}
void append_bulk(std::string& out, std::string_view s) {
  out.push_back('$');
  out.append(std::to_string(s.size()));
  out.append("\r\n");
  out.append(s);
  out.append("\r\n");
}
void append_nil(std::string& out) {
  out.append("$-1\r\n");
}

// A command's arguments, its name first.
using Args = std::span<const std::string_view>;

// What running fn on a shard gives back: fn's value, or why the shard did not answer.
template <class R>
using ShardResult = std::conditional_t<std::is_void_v<R>, absl::Status, absl::StatusOr<R>>;

// One client connection: reads commands, runs them through the table below, writes the replies.
// Every method: the connection's shard's loop thread, inside the connection's fiber.
class RespConnection {
 public:
  RespConnection(Connection& c, const RespOptions& o, RespShared& shared)
      : c_(c),
        o_(o),
        shared_(shared),
        parser_(RespLimits{o.max_bulk_bytes, o.max_array_len, o.max_inline_bytes,
                           o.max_command_bytes}) {}

  void run();

  // For the command handlers. The reply buffer: a handler appends its reply here.
  std::string& out() { return out_; }
  size_t shard_count() const { return c_.shard().count; }
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
  std::string name_;  // the command's name in lower case
};

void RespConnection::run() {
  if (shared_.stores.size() != c_.shard().count) {
    std::fprintf(stderr, "serve_resp: %zu stores for %zu shards\n", shared_.stores.size(),
                 c_.shard().count);
    std::abort();
  }
  for (;;) {
    RespParseResult result;
    while ((result = parser_.next(cmd_)) == RespParseResult::kCommand) {
      c_.count_requests();
      if (!execute(cmd_.args)) {
        if (flush()) c_.linger();
        return;
      }
      if (out_.size() >= kFlushBytes && !flush()) return;
    }
    if (result == RespParseResult::kError) {
      c_.count_requests();
      append_error(out_, "ERR " + parser_.error());
      if (flush()) c_.linger();
      return;
    }
    if (!flush()) return;

    const bool idle = parser_.buffered() == 0;
    if (idle && !c_.begin_idle()) return;  // draining: nothing in flight, close
    std::span<char> space = parser_.prepare(kReadChunk);
    absl::StatusOr<size_t> n =
        c_.read(std::as_writable_bytes(space), timeout_deadline(o_.idle_timeout));
    parser_.commit(n.ok() ? *n : 0);
    if (idle) c_.end_idle();
    if (!n.ok() || *n == 0) return;  // timeout, drain, a broken connection or the peer closed
  }
}

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

bool RespConnection::shard_failure(const absl::Status& s) {
  if (absl::IsCancelled(s)) return false;
  std::string msg = "ERR the shard owning the key did not answer: ";
  append_quoted(msg, std::string_view(s.message().data(), s.message().size()), kMaxQuoted);
  append_error(out_, msg);
  return true;
}

// ---- Commands ----
// A handler runs a command whose argument count the table accepted: it appends the reply to
// c.out() and returns false when the connection closes after it.

bool cmd_ping(RespConnection& c, Args args) {
  if (args.size() == 1) {
    append_simple(c.out(), "PONG");
  } else {
    append_bulk(c.out(), args[1]);
  }
  return true;
}

bool cmd_echo(RespConnection& c, Args args) {
  append_bulk(c.out(), args[1]);
  return true;
}

bool cmd_set(RespConnection& c, Args args) {
  if (args.size() > 3) {
    append_error(c.out(), "ERR syntax error");  // SET's options (EX, NX, ...) are not supported
    return true;
  }
  absl::Status s = c.on_owner(args[1], [v = std::string(args[2])](RespStore& st, auto&& k) mutable {
    st.set(std::string(std::forward<decltype(k)>(k)), std::move(v));
  });
  if (!s.ok()) return c.shard_failure(s);
  append_simple(c.out(), "OK");
  return true;
}

bool cmd_get(RespConnection& c, Args args) {
  absl::StatusOr<std::optional<std::string>> v =
      c.on_owner(args[1], [](RespStore& s, std::string_view k) { return s.get(k); });
  if (!v.ok()) return c.shard_failure(v.status());
  if (v->has_value()) {
    append_bulk(c.out(), **v);
  } else {
    append_nil(c.out());
  }
  return true;
}

// DEL and EXISTS: how many of the keys (repeats counted) erase or contains hit.
template <bool kErase>
bool count_keys(RespConnection& c, Args args) {
  int64_t count = 0;
  for (std::string_view key : args.subspan(1)) {
    absl::StatusOr<bool> hit = c.on_owner(
        key, [](RespStore& s, std::string_view k) { return kErase ? s.erase(k) : s.contains(k); });
    if (!hit.ok()) return c.shard_failure(hit.status());
    if (*hit) ++count;
  }
  append_int(c.out(), count);
  return true;
}

bool cmd_incr(RespConnection& c, Args args) {
  // The store's StatusOr, flattened: on_owner wraps the value in a StatusOr of its own.
  struct Incr {
    absl::StatusCode code;
    int64_t value;
  };
  absl::StatusOr<Incr> v = c.on_owner(args[1], [](RespStore& s, std::string_view k) {
    absl::StatusOr<int64_t> r = s.incr(k);
    return r.ok() ? Incr{absl::StatusCode::kOk, *r} : Incr{r.status().code(), 0};
  });
  if (!v.ok()) return c.shard_failure(v.status());
  if (v->code == absl::StatusCode::kOk) {
    append_int(c.out(), v->value);
  } else if (v->code == absl::StatusCode::kOutOfRange) {
    append_error(c.out(), "ERR increment or decrement would overflow");
  } else {
    append_error(c.out(), "ERR value is not an integer or out of range");
  }
  return true;
}

bool cmd_dbsize(RespConnection& c, Args) {
  int64_t total = 0;
  for (size_t i = 0; i < c.shard_count(); ++i) {
    absl::StatusOr<size_t> n = c.on_shard(i, [](RespStore& s) { return s.size(); });
    if (!n.ok()) return c.shard_failure(n.status());
    total += static_cast<int64_t>(*n);
  }
  append_int(c.out(), total);
  return true;
}

bool cmd_command(RespConnection& c, Args) {
  c.out().append("*0\r\n");  // no command table for clients: redis-cli works without one
  return true;
}

bool cmd_quit(RespConnection& c, Args) {
  append_simple(c.out(), "OK");
  return false;
}

constexpr size_t kAnyArgs = std::numeric_limits<size_t>::max();

struct CommandSpec {
  std::string_view name;  // lower case
  size_t min_args;        // argument counts accepted, the name included
  size_t max_args;
  bool (*handler)(RespConnection&, Args);
};

// The commands, looked up in this order. A count outside [min_args, max_args] gets Redis'
// "wrong number of arguments" error before the handler runs.
constexpr CommandSpec kCommands[] = {
    {"ping", 1, 2, cmd_ping},
    {"echo", 2, 2, cmd_echo},
    {"set", 3, kAnyArgs, cmd_set},
    {"get", 2, 2, cmd_get},
    {"del", 2, kAnyArgs, count_keys<true>},
    {"exists", 2, kAnyArgs, count_keys<false>},
    {"incr", 2, 2, cmd_incr},
    {"dbsize", 1, 1, cmd_dbsize},
    {"command", 1, kAnyArgs, cmd_command},
    {"quit", 1, kAnyArgs, cmd_quit},
};

void append_wrong_arity(std::string& out, std::string_view lower_name) {
  std::string msg = "ERR wrong number of arguments for '";
  append_quoted(msg, lower_name, kMaxQuoted);
  msg.append("' command");
  append_error(out, msg);
}

void append_unknown_command(std::string& out, Args args) {
  std::string msg = "ERR unknown command '";
  append_quoted(msg, args[0], kMaxQuoted);
  msg.append("', with args beginning with: ");
  size_t quoted = 0;
  for (size_t i = 1; i < args.size() && quoted < kMaxQuoted; ++i) {
    const std::string_view arg = args[i].substr(0, kMaxQuoted - quoted);
    msg.push_back('\'');
    append_quoted(msg, arg, arg.size());
    msg.append("' ");
    quoted += arg.size();
  }
  append_error(out, msg);
}

bool RespConnection::execute(Args args) {
  name_.clear();
  for (char c : args[0]) name_.push_back(ascii_lower(c));
  for (const CommandSpec& cmd : kCommands) {
    if (cmd.name != name_) continue;
    if (args.size() < cmd.min_args || args.size() > cmd.max_args) {
      append_wrong_arity(out_, name_);
      return true;
    }
    return cmd.handler(*this, args);
  }
  append_unknown_command(out_, args);
  return true;
}

}  // namespace

// ---- RespStore ----

std::optional<std::string> RespStore::get(std::string_view key) const {
  loop_thread_.check();
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

void RespStore::set(std::string key, std::string value) {
  loop_thread_.check();
  auto it = map_.find(std::string_view(key));
  if (it != map_.end()) {
    it->second = std::move(value);
  } else {
    map_.emplace(std::move(key), std::move(value));
  }
}

bool RespStore::erase(std::string_view key) {
  loop_thread_.check();
  auto it = map_.find(key);
  if (it == map_.end()) return false;
  map_.erase(it);
  return true;
}

bool RespStore::contains(std::string_view key) const {
  loop_thread_.check();
  return map_.find(key) != map_.end();
}

absl::StatusOr<int64_t> RespStore::incr(std::string_view key) {
  loop_thread_.check();
  auto it = map_.find(key);
  int64_t v = 0;
  if (it != map_.end() && !parse_strict_int64(it->second, &v)) {
    return absl::InvalidArgumentError("value is not an integer");
  }
  if (v == std::numeric_limits<int64_t>::max()) {
    return absl::OutOfRangeError("increment would overflow");
  }
  ++v;
  if (it != map_.end()) {
    it->second = std::to_string(v);
  } else {
    map_.emplace(std::string(key), std::to_string(v));
  }
  return v;
}

size_t RespStore::size() const {
  loop_thread_.check();
  return map_.size();
}

size_t resp_key_owner(std::string_view key, size_t shards) {
  if (shards <= 1) return 0;
  uint64_t h = 14695981039346656037ull;
  for (char c : key) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return static_cast<size_t>(h % shards);
}

void serve_resp(Connection& c, const RespOptions& o, RespShared& shared) {
  RespConnection(c, o, shared).run();
}

}  // namespace reactord
