#include "services/resp.h"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "reactor/call_on.h"
#include "services/resp_parser.h"

namespace reactord {
namespace {

// Unknown-command errors quote at most this much of the command.
constexpr size_t kMaxQuoted = 128;

#if !defined(NDEBUG) || defined(REACTOR_ASAN) || defined(REACTOR_TSAN)
constexpr bool kCheckThreads = true;
#else
constexpr bool kCheckThreads = false;
#endif

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

class RespConnection {
 public:
  RespConnection(Connection& c, const RespOptions& o, RespShared& shared)
      : c_(c),
        o_(o),
        shared_(shared),
        parser_(RespLimits{o.max_bulk_bytes, o.max_array_len, o.max_inline_bytes,
                           o.max_command_bytes}) {}

  void run();

 private:
  // Executes one command into out_; false when the connection closes after it.
  bool execute(const std::vector<std::string_view>& args);
  // Runs fn(store, key) on the shard owning key. fn must not suspend.
  template <class F>
  auto on_owner(std::string_view key, F fn)
      -> absl::StatusOr<decltype(fn(std::declval<RespStore&>(), key))>;
  // Replies with why a call to another shard failed; false if the connection must close.
  bool shard_failure(const absl::Status& s);
  void wrong_arity(std::string_view lower_name);
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

template <class F>
auto RespConnection::on_owner(std::string_view key, F fn)
    -> absl::StatusOr<decltype(fn(std::declval<RespStore&>(), key))> {
  const ShardView& shard = c_.shard();
  const size_t owner = resp_key_owner(key, shard.count);
  RespStore& store = *shared_.stores[owner];
  if (owner == shard.index) return fn(store, key);
  // The function may outlive this wait (deadline, cancel): it owns a copy of the key.
  return reactor::call_on(
      *shard.reactors[owner], [&store, k = std::string(key), fn]() { return fn(store, k); },
      timeout_deadline(o_.idle_timeout));
}

bool RespConnection::shard_failure(const absl::Status& s) {
  if (absl::IsCancelled(s)) return false;
  std::string msg = "ERR the shard owning the key did not answer: ";
  append_quoted(msg, std::string_view(s.message().data(), s.message().size()), kMaxQuoted);
  append_error(out_, msg);
  return true;
}

void RespConnection::wrong_arity(std::string_view lower_name) {
  std::string msg = "ERR wrong number of arguments for '";
  append_quoted(msg, lower_name, kMaxQuoted);
  msg.append("' command");
  append_error(out_, msg);
}

bool RespConnection::execute(const std::vector<std::string_view>& args) {
  name_.clear();
  for (char c : args[0]) name_.push_back(ascii_lower(c));
  const std::string_view name = name_;
  const size_t argc = args.size();

  if (name == "ping") {
    if (argc == 1) {
      append_simple(out_, "PONG");
    } else if (argc == 2) {
      append_bulk(out_, args[1]);
    } else {
      wrong_arity(name);
    }
  } else if (name == "echo") {
    if (argc != 2) {
      wrong_arity(name);
    } else {
      append_bulk(out_, args[1]);
    }
  } else if (name == "set") {
    if (argc < 3) {
      wrong_arity(name);
    } else if (argc > 3) {
      append_error(out_, "ERR syntax error");  // SET's options (EX, NX, ...) are not supported
    } else {
      const size_t owner = resp_key_owner(args[1], c_.shard().count);
      RespStore& store = *shared_.stores[owner];
      if (owner == c_.shard().index) {
        store.set(std::string(args[1]), std::string(args[2]));
      } else {
        absl::Status s = reactor::call_on(
            *c_.shard().reactors[owner],
            [&store, k = std::string(args[1]), v = std::string(args[2])]() mutable {
              store.set(std::move(k), std::move(v));
            },
            timeout_deadline(o_.idle_timeout));
        if (!s.ok()) return shard_failure(s);
      }
      append_simple(out_, "OK");
    }
  } else if (name == "get") {
    if (argc != 2) {
      wrong_arity(name);
    } else {
      absl::StatusOr<std::optional<std::string>> v =
          on_owner(args[1], [](RespStore& s, std::string_view k) { return s.get(k); });
      if (!v.ok()) return shard_failure(v.status());
      if (v->has_value()) {
        append_bulk(out_, **v);
      } else {
        append_nil(out_);
      }
    }
  } else if (name == "del" || name == "exists") {
    if (argc < 2) {
      wrong_arity(name);
    } else {
      const bool del = name == "del";
      int64_t count = 0;
      for (size_t i = 1; i < argc; ++i) {
        absl::StatusOr<bool> hit = on_owner(args[i], [del](RespStore& s, std::string_view k) {
          return del ? s.erase(k) : s.contains(k);
        });
        if (!hit.ok()) return shard_failure(hit.status());
        if (*hit) ++count;
      }
      append_int(out_, count);
    }
  } else if (name == "incr") {
    if (argc != 2) {
      wrong_arity(name);
    } else {
      // The store's StatusOr, flattened: call_on wraps the value in a StatusOr of its own.
      struct Incr {
        absl::StatusCode code;
        int64_t value;
      };
      absl::StatusOr<Incr> v = on_owner(args[1], [](RespStore& s, std::string_view k) {
        absl::StatusOr<int64_t> r = s.incr(k);
        return r.ok() ? Incr{absl::StatusCode::kOk, *r} : Incr{r.status().code(), 0};
      });
      if (!v.ok()) return shard_failure(v.status());
      if (v->code == absl::StatusCode::kOk) {
        append_int(out_, v->value);
      } else if (v->code == absl::StatusCode::kOutOfRange) {
        append_error(out_, "ERR increment or decrement would overflow");
      } else {
        append_error(out_, "ERR value is not an integer or out of range");
      }
    }
  } else if (name == "dbsize") {
    if (argc != 1) {
      wrong_arity(name);
    } else {
      const ShardView& shard = c_.shard();
      int64_t total = 0;
      for (size_t i = 0; i < shard.count; ++i) {
        RespStore& store = *shared_.stores[i];
        if (i == shard.index) {
          total += static_cast<int64_t>(store.size());
          continue;
        }
        absl::StatusOr<size_t> n = reactor::call_on(
            *shard.reactors[i], [&store] { return store.size(); },
            timeout_deadline(o_.idle_timeout));
        if (!n.ok()) return shard_failure(n.status());
        total += static_cast<int64_t>(*n);
      }
      append_int(out_, total);
    }
  } else if (name == "command") {
    out_.append("*0\r\n");  // no command table: redis-cli works without one
  } else if (name == "quit") {
    append_simple(out_, "OK");
    return false;
  } else {
    std::string msg = "ERR unknown command '";
    append_quoted(msg, args[0], kMaxQuoted);
    msg.append("', with args beginning with: ");
    size_t quoted = 0;
    for (size_t i = 1; i < argc && quoted < kMaxQuoted; ++i) {
      const std::string_view arg = args[i].substr(0, kMaxQuoted - quoted);
      msg.push_back('\'');
      append_quoted(msg, arg, arg.size());
      msg.append("' ");
      quoted += arg.size();
    }
    append_error(out_, msg);
  }
  return true;
}

}  // namespace

// ---- RespStore ----

void RespStore::check_thread() const {
  if constexpr (kCheckThreads) {
    reactor::Reactor* current = reactor::Reactor::current();
    if (current == nullptr) return;  // no shard running here: set-up or inspection
    reactor::Reactor* expected = nullptr;
    if (owner_.compare_exchange_strong(expected, current, std::memory_order_relaxed)) return;
    if (expected != current) {
      std::fprintf(stderr, "RespStore used by a reactor other than its shard's\n");
      std::abort();
    }
  }
}

std::optional<std::string> RespStore::get(std::string_view key) const {
  check_thread();
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  return it->second;
}

void RespStore::set(std::string key, std::string value) {
  check_thread();
  auto it = map_.find(std::string_view(key));
  if (it != map_.end()) {
    it->second = std::move(value);
  } else {
    map_.emplace(std::move(key), std::move(value));
  }
}

bool RespStore::erase(std::string_view key) {
  check_thread();
  auto it = map_.find(key);
  if (it == map_.end()) return false;
  map_.erase(it);
  return true;
}

bool RespStore::contains(std::string_view key) const {
  check_thread();
  return map_.find(key) != map_.end();
}

absl::StatusOr<int64_t> RespStore::incr(std::string_view key) {
  check_thread();
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
  check_thread();
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
