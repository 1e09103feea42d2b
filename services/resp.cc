#include "services/resp.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <span>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "services/resp_connection.h"

namespace reactord {
namespace resp {

// ---- Reply writers and argument parsing ----

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

bool equals_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(a[i])) !=
        absl::ascii_tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = absl::ascii_tolower(static_cast<unsigned char>(c));
  return out;
}

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
void append_array_header(std::string& out, size_t n) {
  out.push_back('*');
  out.append(std::to_string(n));
  out.append("\r\n");
}

namespace {

void append_subcommand_error(std::string& out, std::string_view sub, std::string_view cmd) {
  std::string msg = "ERR unknown subcommand '";
  append_quoted(msg, sub, kMaxQuoted);
  msg.append("'. Try ").append(cmd).append(" HELP.");
  append_error(out, msg);
}

void append_wrong_arity(std::string& out, std::string_view lower_name) {
  std::string msg = "ERR wrong number of arguments for '";
  append_quoted(msg, lower_name, kMaxQuoted);
  msg.append("' command");
  append_error(out, msg);
}

// ---- Connection and introspection commands ----

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

bool cmd_quit(RespConnection& c, Args) {
  append_simple(c.out(), "OK");
  return false;
}

bool cmd_select(RespConnection& c, Args args) {
  int64_t db = 0;
  if (!parse_strict_int64(args[1], &db)) {
    append_error(c.out(), "ERR value is not an integer or out of range");
  } else if (db != 0) {
    append_error(c.out(), "ERR DB index is out of range");
  } else {
    append_simple(c.out(), "OK");
  }
  return true;
}

// Redis' rule for client names: printable ASCII without spaces.
bool valid_client_name(std::string_view name) {
  for (char ch : name) {
    if (ch < '!' || ch > '~') return false;
  }
  return true;
}

bool set_client_name(RespConnection& c, std::string_view name) {
  if (!valid_client_name(name)) {
    append_error(c.out(),
                 "ERR Client names cannot contain spaces, newlines or special characters.");
    return false;
  }
  c.name() = std::string(name);
  return true;
}

// HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only; no AUTH (there are no users).
bool cmd_hello(RespConnection& c, Args args) {
  if (args.size() >= 2) {
    int64_t proto = 0;
    if (!parse_strict_int64(args[1], &proto)) {
      append_error(c.out(), "ERR Protocol version is not an integer or out of range");
      return true;
    }
    if (proto != 2) {
      append_error(c.out(), "NOPROTO unsupported protocol version");
      return true;
    }
  }
  std::string_view setname;
  bool have_setname = false;
  for (size_t i = 2; i < args.size(); ++i) {
    if (equals_nocase(args[i], "setname") && i + 1 < args.size()) {
      setname = args[++i];
      have_setname = true;
    } else if (equals_nocase(args[i], "auth") && i + 2 < args.size()) {
      append_error(c.out(), "ERR AUTH is not supported by this server (it has no users)");
      return true;
    } else {
      std::string msg = "ERR Syntax error in HELLO option '";
      append_quoted(msg, args[i], kMaxQuoted);
      msg.push_back('\'');
      append_error(c.out(), msg);
      return true;
    }
  }
  if (have_setname && !set_client_name(c, setname)) return true;
  std::string& out = c.out();
  append_array_header(out, 14);
  append_bulk(out, "server");
  append_bulk(out, "redis");
  append_bulk(out, "version");
  append_bulk(out, kRespRedisVersion);
  append_bulk(out, "proto");
  append_int(out, 2);
  append_bulk(out, "id");
  append_int(out, static_cast<int64_t>(c.id()));
  append_bulk(out, "mode");
  append_bulk(out, "standalone");
  append_bulk(out, "role");
  append_bulk(out, "master");
  append_bulk(out, "modules");
  append_array_header(out, 0);
  return true;
}

bool cmd_client(RespConnection& c, Args args) {
  const std::string sub = to_lower(args[1]);
  std::string& out = c.out();
  if (sub == "id" && args.size() == 2) {
    append_int(out, static_cast<int64_t>(c.id()));
  } else if (sub == "getname" && args.size() == 2) {
    if (c.name().empty()) {
      append_nil(out);
    } else {
      append_bulk(out, c.name());
    }
  } else if (sub == "setname" && args.size() == 3) {
    if (set_client_name(c, args[2])) append_simple(out, "OK");
  } else if (sub == "setinfo" && args.size() == 4) {
    if (!equals_nocase(args[2], "lib-name") && !equals_nocase(args[2], "lib-ver")) {
      std::string msg = "ERR Unrecognized option '";
      append_quoted(msg, args[2], kMaxQuoted);
      msg.push_back('\'');
      append_error(out, msg);
    } else {
      append_simple(out, "OK");  // accepted; not reported anywhere
    }
  } else if (sub == "id" || sub == "getname" || sub == "setname" || sub == "setinfo") {
    append_wrong_arity(out, "client|" + sub);
  } else {
    append_subcommand_error(out, args[1], "CLIENT");
  }
  return true;
}

const CommandSpec* find_command(std::string_view lower);

// Redis' arity: the exact count, or minus the least count when more are accepted.
int64_t redis_arity(const CommandSpec& cmd) {
  return cmd.min_args == cmd.max_args ? static_cast<int64_t>(cmd.min_args)
                                      : -static_cast<int64_t>(cmd.min_args);
}

// One COMMAND INFO entry as Redis 6 gives it: name, arity, flags, first key, last key, step.
void append_command_info(std::string& out, const CommandSpec& cmd) {
  append_array_header(out, 6);
  append_bulk(out, cmd.name);
  append_int(out, redis_arity(cmd));
  std::vector<std::string_view> flags;
  if (cmd.flags & kWrite) flags.insert(flags.end(), {"write", "denyoom"});
  if (cmd.flags & kReadonly) flags.push_back("readonly");
  append_array_header(out, flags.size());
  for (std::string_view f : flags) append_simple(out, f);
  int64_t first = 1, last = 1, step = 1;
  if (cmd.flags & kNoKeys) first = last = step = 0;
  if (cmd.flags & kAllKeys) last = -1;
  if (cmd.flags & kPairs) last = -1, step = 2;
  if (cmd.name == "rename" || cmd.name == "renamenx") last = 2;
  append_int(out, first);
  append_int(out, last);
  append_int(out, step);
}

template <class Fn>
void for_each_command(Fn&& fn) {
  for (const CommandSpec& cmd : connection_commands()) fn(cmd);
  for (const CommandSpec& cmd : key_commands()) fn(cmd);
}

bool cmd_command(RespConnection& c, Args args) {
  std::string& out = c.out();
  const std::string sub = args.size() > 1 ? to_lower(args[1]) : "";
  size_t count = 0;
  for_each_command([&](const CommandSpec&) { ++count; });
  if (args.size() == 1) {
    append_array_header(out, count);
    for_each_command([&](const CommandSpec& cmd) { append_command_info(out, cmd); });
  } else if (sub == "count") {
    if (args.size() != 2) {
      append_wrong_arity(out, "command|count");
    } else {
      append_int(out, static_cast<int64_t>(count));
    }
  } else if (sub == "info") {
    if (args.size() == 2) {
      append_array_header(out, count);
      for_each_command([&](const CommandSpec& cmd) { append_command_info(out, cmd); });
    } else {
      append_array_header(out, args.size() - 2);
      for (std::string_view name : args.subspan(2)) {
        const CommandSpec* cmd = find_command(to_lower(name));
        if (cmd) {
          append_command_info(out, *cmd);
        } else {
          append_nil(out);
        }
      }
    }
  } else if (sub == "docs") {
    append_array_header(out, 0);  // no documentation: an empty map, which Redis allows
  } else if (sub == "list") {
    append_array_header(out, count);
    for_each_command([&](const CommandSpec& cmd) { append_bulk(out, cmd.name); });
  } else {
    append_subcommand_error(out, args[1], "COMMAND");
  }
  return true;
}

// Redis' bytesToHuman.
std::string human_bytes(uint64_t n) {
  const double d = static_cast<double>(n);
  if (n < 1024) return absl::StrCat(n, "B");
  if (n < 1024ull * 1024) return absl::StrFormat("%.2fK", d / 1024);
  if (n < 1024ull * 1024 * 1024) return absl::StrFormat("%.2fM", d / (1024.0 * 1024));
  return absl::StrFormat("%.2fG", d / (1024.0 * 1024 * 1024));
}

// INFO [section ...]: server, clients, memory, stats, keyspace, in Redis' format. Counters are
// read from every shard's atomics, without calling the shards.
bool cmd_info(RespConnection& c, Args args) {
  auto wanted = [&](std::string_view section) {
    if (args.size() == 1) return true;
    for (std::string_view a : args.subspan(1)) {
      if (equals_nocase(a, section) || equals_nocase(a, "all") || equals_nocase(a, "default") ||
          equals_nocase(a, "everything")) {
        return true;
      }
    }
    return false;
  };
  RespShared& sh = c.shared();
  uint64_t keys = 0, expires = 0, commands = 0, received = 0, connected = 0, hits = 0, misses = 0,
           expired = 0;
  for (const auto& store : sh.stores) {
    keys += store->key_count();
    expires += store->expires_count();
    const RespShardStats& st = store->stats();
    commands += st.commands.get();
    received += st.connections_received.get();
    connected += st.connected.get();
    hits += st.hits.get();
    misses += st.misses.get();
    expired += st.expired.get();
  }
  std::string text;
  if (wanted("server")) {
    const int64_t up =
        std::chrono::duration_cast<std::chrono::seconds>(reactor::Clock::now() - sh.started)
            .count();
    absl::StrAppend(&text, "# Server\r\nredis_version:", std::string(kRespRedisVersion),
                    "\r\nredis_mode:standalone\r\nserver_name:reactord\r\narch_bits:64\r\n",
                    "multiplexing_api:reactord\r\nprocess_id:", ::getpid(),
                    "\r\nshards:", sh.stores.size(), "\r\nuptime_in_seconds:", up,
                    "\r\nuptime_in_days:", up / 86400, "\r\n\r\n");
  }
  if (wanted("clients")) {
    absl::StrAppend(&text, "# Clients\r\nconnected_clients:", connected,
                    "\r\nblocked_clients:0\r\n\r\n");
  }
  if (wanted("memory")) {
    const uint64_t used = sh.used_memory();
    const uint64_t max = sh.max_memory_bytes.load(std::memory_order_relaxed);
    uint64_t pending = 0;
    for (const auto& store : sh.stores) pending += store->pending_free();
    absl::StrAppend(
        &text, "# Memory\r\nused_memory:", used, "\r\nused_memory_human:", human_bytes(used),
        "\r\nmaxmemory:", max, "\r\nmaxmemory_human:", human_bytes(max),
        "\r\nmaxmemory_policy:noeviction\r\nlazyfree_pending_objects:", pending, "\r\n\r\n");
  }
  if (wanted("stats")) {
    absl::StrAppend(&text, "# Stats\r\ntotal_connections_received:", received,
                    "\r\ntotal_commands_processed:", commands, "\r\nexpired_keys:", expired,
                    "\r\nevicted_keys:0\r\nkeyspace_hits:", hits, "\r\nkeyspace_misses:", misses,
                    "\r\n\r\n");
  }
  if (wanted("keyspace")) {
    absl::StrAppend(&text, "# Keyspace\r\n");
    if (keys > 0) absl::StrAppend(&text, "db0:keys=", keys, ",expires=", expires, ",avg_ttl=0\r\n");
  }
  while (text.ends_with("\r\n\r\n")) text.resize(text.size() - 2);
  append_bulk(c.out(), text);
  return true;
}

constexpr CommandSpec kConnectionCommands[] = {
    {"ping", 1, 2, cmd_ping, kNoKeys},
    {"echo", 2, 2, cmd_echo, kNoKeys},
    {"quit", 1, kAnyArgs, cmd_quit, kNoKeys},
    {"select", 2, 2, cmd_select, kNoKeys},
    {"hello", 1, kAnyArgs, cmd_hello, kNoKeys},
    {"client", 2, kAnyArgs, cmd_client, kNoKeys},
    {"command", 1, kAnyArgs, cmd_command, kNoKeys},
    {"info", 1, kAnyArgs, cmd_info, kNoKeys},
};

const CommandSpec* find_command(std::string_view lower) {
  for (const CommandSpec& cmd : kConnectionCommands) {
    if (cmd.name == lower) return &cmd;
  }
  for (const CommandSpec& cmd : key_commands()) {
    if (cmd.name == lower) return &cmd;
  }
  return nullptr;
}

void append_unknown_command(std::string& out, Args args) {
  std::string msg = "ERR unknown command '";
  append_quoted(msg, args[0], kMaxQuoted);
  msg.append("', with args beginning with: ");
  // As Redis: arguments are added while the quoted list (quotes and spaces included) is shorter
  // than kMaxQuoted bytes, each cut to what is left of that budget.
  const size_t start = msg.size();
  for (size_t i = 1; i < args.size() && msg.size() - start < kMaxQuoted; ++i) {
    msg.push_back('\'');
    append_quoted(msg, args[i], kMaxQuoted - (msg.size() - 1 - start));
    msg.append("' ");
  }
  append_error(out, msg);
}

}  // namespace

std::span<const CommandSpec> connection_commands() {
  return kConnectionCommands;
}

RespConnection::RespConnection(Connection& c, const RespOptions& o, RespShared& shared)
    : c_(c),
      o_(o),
      shared_(shared),
      parser_(
          RespLimits{o.max_bulk_bytes, o.max_array_len, o.max_inline_bytes, o.max_command_bytes}),
      id_(shared.next_client_id.fetch_add(1, std::memory_order_relaxed)) {
  if (shared_.stores.size() != c_.shard().count) {
    std::fprintf(stderr, "serve_resp: %zu stores for %zu shards\n", shared_.stores.size(),
                 c_.shard().count);
    std::abort();
  }
  local_store().stats().connections_received.add();
  local_store().stats().connected.add();
}

RespConnection::~RespConnection() {
  local_store().stats().connected.add(static_cast<uint64_t>(-1));
}

void RespConnection::run() {
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
    const reactor::Deadline deadline = timeout_deadline(o_.idle_timeout);
    absl::Status status;
    // kDone: timeout, drain, a broken connection or the peer closed.
    if (c_.read_into(parser_, out_, idle, deadline, &status) == Connection::ReadStep::kDone) return;
  }
}

bool RespConnection::shard_failure(const absl::Status& s) {
  if (absl::IsCancelled(s)) return false;
  std::string msg = "ERR the shard owning the key did not answer: ";
  append_quoted(msg, std::string_view(s.message().data(), s.message().size()), kMaxQuoted);
  append_error(out_, msg);
  return true;
}

bool RespConnection::execute(Args args) {
  local_store().stats().commands.add();
  lower_.clear();
  for (char c : args[0]) lower_.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  const CommandSpec* cmd = find_command(lower_);
  if (cmd == nullptr) {
    append_unknown_command(out_, args);
    return true;
  }
  if (args.size() < cmd->min_args || args.size() > cmd->max_args) {
    append_wrong_arity(out_, lower_);
    return true;
  }
  if (cmd->flags & kWrite) {
    const uint64_t max = shared_.max_memory_bytes.load(std::memory_order_relaxed);
    if (max != 0 && shared_.used_memory() > max) {
      append_error(out_, "OOM command not allowed when used memory > 'maxmemory'.");
      return true;
    }
  }
  return cmd->handler(*this, args);
}

}  // namespace resp

uint64_t RespShared::used_memory() const {
  uint64_t total = 0;
  for (const auto& s : stores) total += s->used_memory();
  return total;
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
  resp::RespConnection(c, o, shared).run();
}

}  // namespace reactord
