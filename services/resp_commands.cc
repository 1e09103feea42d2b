// The resp service's string and key commands. Each keyed command runs on the shard owning its key
// and formats its reply there (keyed()); commands over every key (DBSIZE, KEYS, SCAN, FLUSHDB)
// visit the shards in turn.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "services/resp_connection.h"

namespace reactord::resp {
namespace {

constexpr char kNotInteger[] = "ERR value is not an integer or out of range";
constexpr char kSyntax[] = "ERR syntax error";
constexpr char kOverflow[] = "ERR increment or decrement would overflow";
constexpr char kTooBig[] = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

std::string invalid_expire(std::string_view cmd) {
  return "ERR invalid expire time in '" + std::string(cmd) + "' command";
}

// Runs fn(store, key, out) on the shard owning key: inline when it is this one, else there, its
// reply text brought back. fn must not suspend and must own its captures.
template <class F>
bool keyed(RespConnection& c, std::string_view key, F fn) {
  const size_t owner = resp_key_owner(key, c.shard_count());
  if (owner == c.shard_index()) {
    fn(c.local_store(), key, c.out());
    return true;
  }
  absl::StatusOr<std::string> reply =
      c.on_shard(owner, [fn = std::move(fn), k = std::string(key)](RespStore& s) mutable {
        std::string out;
        fn(s, std::string_view(k), out);
        return out;
      });
  if (!reply.ok()) return c.shard_failure(reply.status());
  c.out().append(*reply);
  return true;
}

void append_entry_value(std::string& out, const RespEntry* e) {
  if (e) {
    append_bulk(out, e->value);
  } else {
    append_nil(out);
  }
}

// An expiry argument: `amount` in seconds (unit 1000) or ms (unit 1), relative to now unless
// absolute. Absent when not a positive integer that fits; *error says which error to give.
std::optional<int64_t> parse_expire(std::string_view arg, int64_t unit, bool absolute,
                                    std::string_view cmd, std::string* error) {
  int64_t v = 0;
  if (!parse_strict_int64(arg, &v)) {
    *error = kNotInteger;
    return std::nullopt;
  }
  int64_t ms = 0;
  if (v <= 0 || __builtin_mul_overflow(v, unit, &ms) ||
      (!absolute && __builtin_add_overflow(ms, resp_now_ms(), &ms))) {
    *error = invalid_expire(cmd);
    return std::nullopt;
  }
  return ms;
}

// ---- Strings ----

struct SetOptions {
  int64_t expire_ms = 0;
  bool nx = false, xx = false, get = false, keep_ttl = false;
};

// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL], the options in any order.
bool cmd_set(RespConnection& c, Args args) {
  SetOptions o;
  bool have_expire = false;
  for (size_t i = 3; i < args.size(); ++i) {
    const std::string opt = to_lower(args[i]);
    std::string error = kSyntax;
    if (opt == "nx" && !o.xx) {
      o.nx = true;
    } else if (opt == "xx" && !o.nx) {
      o.xx = true;
    } else if (opt == "get") {
      o.get = true;
    } else if (opt == "keepttl" && !have_expire) {
      o.keep_ttl = true;
    } else if ((opt == "ex" || opt == "px" || opt == "exat" || opt == "pxat") && !have_expire &&
               !o.keep_ttl && i + 1 < args.size()) {
      const bool seconds = opt == "ex" || opt == "exat";
      std::optional<int64_t> ms =
          parse_expire(args[++i], seconds ? 1000 : 1, opt.ends_with("at"), "set", &error);
      if (!ms) {
        append_error(c.out(), error);
        return true;
      }
      o.expire_ms = *ms;
      have_expire = true;
    } else {
      append_error(c.out(), kSyntax);
      return true;
    }
  }
  return keyed(
      c, args[1],
      [o, v = std::string(args[2])](RespStore& s, std::string_view k, std::string& out) mutable {
        const RespEntry* old = s.peek(k);
        if (o.get) append_entry_value(out, old);
        if ((o.nx && old) || (o.xx && !old)) {
          if (!o.get) append_nil(out);
          return;
        }
        if (o.expire_ms != 0 && o.expire_ms <= resp_now_ms()) {
          s.erase(k);  // already past: as Redis, the key is gone at once
        } else {
          s.set(k, std::move(v), o.expire_ms, o.keep_ttl);
        }
        if (!o.get) append_simple(out, "OK");
      });
}

bool cmd_setnx(RespConnection& c, Args args) {
  return keyed(
      c, args[1],
      [v = std::string(args[2])](RespStore& s, std::string_view k, std::string& out) mutable {
        const bool absent = !s.contains(k);
        if (absent) s.set(k, std::move(v));
        append_int(out, absent ? 1 : 0);
      });
}

// SETEX key seconds value, PSETEX key ms value.
template <int64_t kUnit>
bool cmd_setex(RespConnection& c, Args args) {
  std::string error;
  std::optional<int64_t> ms =
      parse_expire(args[2], kUnit, false, kUnit == 1000 ? "setex" : "psetex", &error);
  if (!ms) {
    append_error(c.out(), error);
    return true;
  }
  return keyed(c, args[1],
               [ms = *ms, v = std::string(args[3])](RespStore& s, std::string_view k,
                                                    std::string& out) mutable {
                 s.set(k, std::move(v), ms);
                 append_simple(out, "OK");
               });
}

bool cmd_get(RespConnection& c, Args args) {
  return keyed(c, args[1], [](RespStore& s, std::string_view k, std::string& out) {
    append_entry_value(out, s.get(k));
  });
}

bool cmd_getset(RespConnection& c, Args args) {
  return keyed(
      c, args[1],
      [v = std::string(args[2])](RespStore& s, std::string_view k, std::string& out) mutable {
        append_entry_value(out, s.get(k));
        s.set(k, std::move(v));
      });
}

bool cmd_getdel(RespConnection& c, Args args) {
  return keyed(c, args[1], [](RespStore& s, std::string_view k, std::string& out) {
    std::optional<RespEntry> e = s.take(k);
    append_entry_value(out, e ? &*e : nullptr);
  });
}

// GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]
bool cmd_getex(RespConnection& c, Args args) {
  std::optional<int64_t> expire;  // 0: persist
  if (args.size() > 2) {
    const std::string opt = to_lower(args[2]);
    std::string error = kSyntax;
    if (opt == "persist" && args.size() == 3) {
      expire = 0;
    } else if ((opt == "ex" || opt == "px" || opt == "exat" || opt == "pxat") && args.size() == 4) {
      expire = parse_expire(args[3], opt == "ex" || opt == "exat" ? 1000 : 1, opt.ends_with("at"),
                            "getex", &error);
    }
    if (!expire) {
      append_error(c.out(), error);
      return true;
    }
  }
  return keyed(c, args[1], [expire](RespStore& s, std::string_view k, std::string& out) {
    append_entry_value(out, s.get(k));
    if (!expire) return;
    if (*expire != 0 && *expire <= resp_now_ms()) {
      s.erase(k);
    } else {
      s.set_expire(k, *expire);
    }
  });
}

bool cmd_mget(RespConnection& c, Args args) {
  append_array_header(c.out(), args.size() - 1);
  for (std::string_view key : args.subspan(1)) {
    if (!keyed(c, key, [](RespStore& s, std::string_view k, std::string& out) {
          append_entry_value(out, s.get(k));
        })) {
      return false;
    }
  }
  return true;
}

// MSET / MSETNX: atomic because all their keys live on one shard; keys spanning shards are
// refused (docs/services.md).
template <bool kNx>
bool cmd_mset(RespConnection& c, Args args) {
  if (args.size() % 2 == 0) {
    append_error(c.out(), absl::StrCat("ERR wrong number of arguments for '",
                                       kNx ? "msetnx" : "mset", "' command"));
    return true;
  }
  const size_t owner = resp_key_owner(args[1], c.shard_count());
  for (size_t i = 3; i < args.size(); i += 2) {
    if (resp_key_owner(args[i], c.shard_count()) != owner) {
      append_error(c.out(),
                   "CROSSSLOT Keys in request don't hash to the same shard (MSET and MSETNX are "
                   "atomic, so their keys must share one)");
      return true;
    }
  }
  // Keys and values alternate in `kv`: views into the request (local) or into copies (remote).
  auto apply = [](RespStore& s, std::span<const std::string_view> kv, std::string& out) {
    if (kNx) {
      for (size_t i = 0; i < kv.size(); i += 2) {
        if (s.contains(kv[i])) {
          append_int(out, 0);
          return;
        }
      }
    }
    for (size_t i = 0; i < kv.size(); i += 2) s.set(kv[i], std::string(kv[i + 1]));
    if (kNx) {
      append_int(out, 1);
    } else {
      append_simple(out, "OK");
    }
  };
  if (owner == c.shard_index()) {  // no copy: the request's bytes outlive the call
    apply(c.local_store(), args.subspan(1), c.out());
    return true;
  }
  std::vector<std::string> copies(args.begin() + 1, args.end());
  return keyed(
      c, args[1],
      [copies = std::move(copies), apply](RespStore& s, std::string_view, std::string& out) {
        std::vector<std::string_view> kv(copies.begin(), copies.end());
        apply(s, kv, out);
      });
}

// The integer at key plus delta, stored (its expiry kept).
void incr_by(RespStore& s, std::string_view k, int64_t delta, std::string& out) {
  const RespEntry* e = s.peek(k);
  int64_t v = 0;
  if (e && !parse_strict_int64(e->value, &v)) {
    append_error(out, kNotInteger);
    return;
  }
  if (__builtin_add_overflow(v, delta, &v)) {
    append_error(out, kOverflow);
    return;
  }
  s.set(k, std::to_string(v), 0, /*keep_ttl=*/true);
  append_int(out, v);
}

// INCR, DECR (kSign with delta 1), INCRBY, DECRBY (kSign with the argument).
template <int kSign>
bool cmd_incr(RespConnection& c, Args args) {
  int64_t delta = 1;
  if (args.size() == 3 && !parse_strict_int64(args[2], &delta)) {
    append_error(c.out(), kNotInteger);
    return true;
  }
  if (kSign < 0) {
    if (delta == std::numeric_limits<int64_t>::min()) {
      append_error(c.out(), "ERR decrement would overflow");
      return true;
    }
    delta = -delta;
  }
  return keyed(c, args[1], [delta](RespStore& s, std::string_view k, std::string& out) {
    incr_by(s, k, delta, out);
  });
}

// Redis' float rules: the whole string, no spaces, not NaN.
bool parse_long_double(std::string_view s, long double* out) {
  if (s.empty() || s.size() > 5000 || absl::ascii_isspace(static_cast<unsigned char>(s.front())))
    return false;
  const std::string z(s);
  char* end = nullptr;
  errno = 0;
  const long double v = std::strtold(z.c_str(), &end);
  if (end != z.c_str() + z.size() || errno == ERANGE || std::isnan(v)) return false;
  *out = v;
  return true;
}

// Redis' human form of a long double: 17 digits after the point, trailing zeros dropped.
std::string format_long_double(long double v) {
  char buf[5100];
  const int n = std::snprintf(buf, sizeof buf, "%.17Lf", v);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

bool cmd_incrbyfloat(RespConnection& c, Args args) {
  long double delta = 0;
  if (!parse_long_double(args[2], &delta)) {
    append_error(c.out(), "ERR value is not a valid float");
    return true;
  }
  return keyed(c, args[1], [delta](RespStore& s, std::string_view k, std::string& out) {
    const RespEntry* e = s.peek(k);
    long double v = 0;
    if (e && !parse_long_double(e->value, &v)) {
      append_error(out, "ERR value is not a valid float");
      return;
    }
    v += delta;
    if (std::isnan(v) || std::isinf(v)) {
      append_error(out, "ERR increment would produce NaN or Infinity");
      return;
    }
    std::string text = format_long_double(v);
    append_bulk(out, text);
    s.set(k, std::move(text), 0, /*keep_ttl=*/true);
  });
}

bool cmd_append(RespConnection& c, Args args) {
  return keyed(c, args[1],
               [v = std::string(args[2]), max = c.options().max_bulk_bytes](
                   RespStore& s, std::string_view k, std::string& out) mutable {
                 const RespEntry* e = s.peek(k);
                 if (!e) {
                   append_int(out, static_cast<int64_t>(v.size()));
                   s.set(k, std::move(v));
                   return;
                 }
                 if (e->value.size() + v.size() > max) {
                   append_error(out, kTooBig);
                   return;
                 }
                 size_t len = 0;
                 s.update(k, [&](std::string& value) {
                   value.append(v);
                   len = value.size();
                 });
                 append_int(out, static_cast<int64_t>(len));
               });
}

bool cmd_strlen(RespConnection& c, Args args) {
  return keyed(c, args[1], [](RespStore& s, std::string_view k, std::string& out) {
    const RespEntry* e = s.get(k);
    append_int(out, e ? static_cast<int64_t>(e->value.size()) : 0);
  });
}

bool cmd_getrange(RespConnection& c, Args args) {
  int64_t start = 0, end = 0;
  if (!parse_strict_int64(args[2], &start) || !parse_strict_int64(args[3], &end)) {
    append_error(c.out(), kNotInteger);
    return true;
  }
  return keyed(c, args[1], [start, end](RespStore& s, std::string_view k, std::string& out) {
    const RespEntry* e = s.get(k);
    const int64_t len = e ? static_cast<int64_t>(e->value.size()) : 0;
    int64_t from = start < 0 ? std::max<int64_t>(len + start, 0) : start;
    int64_t to = end < 0 ? std::max<int64_t>(len + end, 0) : std::min(end, len - 1);
    if (len == 0 || (start < 0 && end < 0 && start > end) || from > to) {
      append_bulk(out, "");
      return;
    }
    append_bulk(out, std::string_view(e->value).substr(static_cast<size_t>(from),
                                                       static_cast<size_t>(to - from + 1)));
  });
}

bool cmd_setrange(RespConnection& c, Args args) {
  int64_t offset = 0;
  if (!parse_strict_int64(args[2], &offset)) {
    append_error(c.out(), kNotInteger);
    return true;
  }
  if (offset < 0) {
    append_error(c.out(), "ERR offset is out of range");
    return true;
  }
  if (static_cast<uint64_t>(offset) + args[3].size() > c.options().max_bulk_bytes) {
    append_error(c.out(), kTooBig);
    return true;
  }
  return keyed(c, args[1],
               [off = static_cast<size_t>(offset), v = std::string(args[3])](
                   RespStore& s, std::string_view k, std::string& out) {
                 auto write = [&](std::string& value) {
                   if (v.empty()) return;
                   if (value.size() < off + v.size()) value.resize(off + v.size(), '\0');
                   value.replace(off, v.size(), v);
                 };
                 const RespEntry* e = s.peek(k);
                 if (!e) {
                   if (v.empty()) {
                     append_int(out, 0);  // nothing to write: the key is not created
                     return;
                   }
                   std::string value;
                   write(value);
                   append_int(out, static_cast<int64_t>(value.size()));
                   s.set(k, std::move(value));
                   return;
                 }
                 size_t len = 0;
                 s.update(k, [&](std::string& value) {
                   write(value);
                   len = value.size();
                 });
                 append_int(out, static_cast<int64_t>(len));
               });
}

// ---- Keys ----

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

bool cmd_type(RespConnection& c, Args args) {
  return keyed(c, args[1], [](RespStore& s, std::string_view k, std::string& out) {
    append_simple(out, s.contains(k) ? "string" : "none");
  });
}

// RENAME key newkey: one step when both keys live on one shard; otherwise the entry is taken
// from its shard and put on the other's (not atomic: a reader there may see neither for a
// moment). If the second shard does not answer, the entry is put back.
bool cmd_rename(RespConnection& c, Args args) {
  const std::string from(args[1]), to(args[2]);
  const size_t shards = c.shard_count();
  if (resp_key_owner(from, shards) == resp_key_owner(to, shards)) {
    return keyed(c, from, [to](RespStore& s, std::string_view k, std::string& out) {
      std::optional<RespEntry> e = s.take(k);
      if (!e) {
        append_error(out, "ERR no such key");
        return;
      }
      s.set(to, std::move(e->value), e->expire_ms);
      append_simple(out, "OK");
    });
  }
  absl::StatusOr<std::optional<RespEntry>> taken =
      c.on_owner(from, [](RespStore& s, std::string_view k) { return s.take(k); });
  if (!taken.ok()) return c.shard_failure(taken.status());
  if (!taken->has_value()) {
    append_error(c.out(), "ERR no such key");
    return true;
  }
  RespEntry e = **taken;
  absl::Status put = c.on_owner(to, [e](RespStore& s, std::string_view k) {
    if (e.expire_ms != 0 && e.expire_ms <= resp_now_ms()) return;
    s.set(k, e.value, e.expire_ms);
  });
  if (!put.ok()) {
    (void)c.on_owner(from, [e = std::move(e)](RespStore& s, std::string_view k) {
      if (!s.contains(k)) s.set(k, e.value, e.expire_ms);
    });
    return c.shard_failure(put);
  }
  append_simple(c.out(), "OK");
  return true;
}

// EXPIRE / PEXPIRE / EXPIREAT / PEXPIREAT key time [NX|XX|GT|LT]
template <int64_t kUnit, bool kAbsolute>
bool cmd_expire(RespConnection& c, Args args) {
  const char* name =
      kUnit == 1000 ? (kAbsolute ? "expireat" : "expire") : (kAbsolute ? "pexpireat" : "pexpire");
  int64_t v = 0, when = 0;
  if (!parse_strict_int64(args[2], &v)) {
    append_error(c.out(), kNotInteger);
    return true;
  }
  if (__builtin_mul_overflow(v, kUnit, &when) ||
      (!kAbsolute && __builtin_add_overflow(when, resp_now_ms(), &when))) {
    append_error(c.out(), invalid_expire(name));
    return true;
  }
  bool nx = false, xx = false, gt = false, lt = false;
  for (std::string_view a : args.subspan(3)) {
    const std::string opt = to_lower(a);
    if (opt == "nx") {
      nx = true;
    } else if (opt == "xx") {
      xx = true;
    } else if (opt == "gt") {
      gt = true;
    } else if (opt == "lt") {
      lt = true;
    } else {
      std::string msg = "ERR Unsupported option ";
      append_quoted(msg, a, kMaxQuoted);
      append_error(c.out(), msg);
      return true;
    }
  }
  if (nx && (xx || gt || lt)) {
    append_error(c.out(), "ERR NX and XX, GT or LT options at the same time are not compatible");
    return true;
  }
  if (gt && lt) {
    append_error(c.out(), "ERR GT and LT options at the same time are not compatible");
    return true;
  }
  return keyed(c, args[1], [=](RespStore& s, std::string_view k, std::string& out) {
    const RespEntry* e = s.peek(k);
    if (!e) {
      append_int(out, 0);
      return;
    }
    const int64_t current = e->expire_ms;  // 0: none, which GT and LT take as forever
    if ((nx && current != 0) || (xx && current == 0) || (gt && (current == 0 || when <= current)) ||
        (lt && current != 0 && when >= current)) {
      append_int(out, 0);
      return;
    }
    if (when <= resp_now_ms()) {
      s.erase(k);
    } else {
      s.set_expire(k, when);
    }
    append_int(out, 1);
  });
}

// TTL (seconds, rounded) and PTTL (ms): -2 without the key, -1 without an expiry.
template <bool kMs>
bool cmd_ttl(RespConnection& c, Args args) {
  return keyed(c, args[1], [](RespStore& s, std::string_view k, std::string& out) {
    const RespEntry* e = s.peek(k);
    if (!e) {
      append_int(out, -2);
    } else if (e->expire_ms == 0) {
      append_int(out, -1);
    } else {
      const int64_t left = std::max<int64_t>(e->expire_ms - resp_now_ms(), 0);
      append_int(out, kMs ? left : (left + 500) / 1000);
    }
  });
}

bool cmd_persist(RespConnection& c, Args args) {
  return keyed(c, args[1], [](RespStore& s, std::string_view k, std::string& out) {
    const RespEntry* e = s.peek(k);
    const bool had = e && e->expire_ms != 0;
    if (had) s.set_expire(k, 0);
    append_int(out, had ? 1 : 0);
  });
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

bool cmd_flush(RespConnection& c, Args args) {
  if (args.size() == 2 && !equals_nocase(args[1], "async") && !equals_nocase(args[1], "sync")) {
    append_error(c.out(), kSyntax);
    return true;
  }
  for (size_t i = 0; i < c.shard_count(); ++i) {
    absl::Status s = c.on_shard(i, [](RespStore& st) { st.clear(); });
    if (!s.ok()) return c.shard_failure(s);
  }
  append_simple(c.out(), "OK");
  return true;
}

bool cmd_keys(RespConnection& c, Args args) {
  std::vector<std::string> all;
  for (size_t i = 0; i < c.shard_count(); ++i) {
    absl::StatusOr<std::vector<std::string>> k =
        c.on_shard(i, [p = std::string(args[1])](RespStore& s) {
          return s.keys(p == "*" ? std::string_view() : std::string_view(p));
        });
    if (!k.ok()) return c.shard_failure(k.status());
    for (std::string& key : *k) all.push_back(std::move(key));
  }
  append_array_header(c.out(), all.size());
  for (const std::string& k : all) append_bulk(c.out(), k);
  return true;
}

// SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]. The cursor: the shard in its low 8 bits, that
// shard's store cursor above.
bool cmd_scan(RespConnection& c, Args args) {
  uint64_t cursor = 0;
  const char* end = args[1].data() + args[1].size();
  if (args[1].empty() || std::from_chars(args[1].data(), end, cursor).ptr != end) {
    append_error(c.out(), "ERR invalid cursor");
    return true;
  }
  std::string pattern;
  int64_t count = 10;
  bool strings = true;
  for (size_t i = 2; i < args.size(); i += 2) {
    const std::string opt = to_lower(args[i]);
    if (i + 1 >= args.size()) {
      append_error(c.out(), kSyntax);
      return true;
    }
    if (opt == "match") {
      pattern = args[i + 1] == "*" ? "" : std::string(args[i + 1]);
    } else if (opt == "count") {
      if (!parse_strict_int64(args[i + 1], &count)) {
        append_error(c.out(), kNotInteger);
        return true;
      }
      if (count < 1) {
        append_error(c.out(), kSyntax);
        return true;
      }
    } else if (opt == "type") {
      strings = equals_nocase(args[i + 1], "string");
    } else {
      append_error(c.out(), kSyntax);
      return true;
    }
  }
  size_t shard = static_cast<size_t>(cursor & 0xff);
  uint64_t local = cursor >> 8;
  std::vector<std::string> found;
  uint64_t next = 0;
  if (shard < c.shard_count()) {
    absl::StatusOr<std::pair<uint64_t, std::vector<std::string>>> step = c.on_shard(
        shard,
        [local, pattern, n = static_cast<size_t>(std::min<int64_t>(count, 1 << 20))](RespStore& s) {
          std::vector<std::string> out;
          const uint64_t at = s.scan(local, pattern, n, out);
          return std::make_pair(at, std::move(out));
        });
    if (!step.ok()) return c.shard_failure(step.status());
    if (strings) found = std::move(step->second);
    if (step->first != 0) {
      next = (step->first << 8) | shard;
    } else if (shard + 1 < c.shard_count()) {
      next = shard + 1;
    }
  }
  append_array_header(c.out(), 2);
  append_bulk(c.out(), std::to_string(next));
  append_array_header(c.out(), found.size());
  for (const std::string& k : found) append_bulk(c.out(), k);
  return true;
}

constexpr CommandSpec kKeyCommands[] = {
    {"get", 2, 2, cmd_get, kReadonly},
    {"set", 3, kAnyArgs, cmd_set, kWrite},
    {"setnx", 3, 3, cmd_setnx, kWrite},
    {"setex", 4, 4, cmd_setex<1000>, kWrite},
    {"psetex", 4, 4, cmd_setex<1>, kWrite},
    {"getset", 3, 3, cmd_getset, kWrite},
    {"getdel", 2, 2, cmd_getdel, 0},
    {"getex", 2, 4, cmd_getex, 0},
    {"mget", 2, kAnyArgs, cmd_mget, kReadonly | kAllKeys},
    {"mset", 3, kAnyArgs, cmd_mset<false>, kWrite | kPairs},
    {"msetnx", 3, kAnyArgs, cmd_mset<true>, kWrite | kPairs},
    {"incr", 2, 2, cmd_incr<1>, kWrite},
    {"decr", 2, 2, cmd_incr<-1>, kWrite},
    {"incrby", 3, 3, cmd_incr<1>, kWrite},
    {"decrby", 3, 3, cmd_incr<-1>, kWrite},
    {"incrbyfloat", 3, 3, cmd_incrbyfloat, kWrite},
    {"append", 3, 3, cmd_append, kWrite},
    {"strlen", 2, 2, cmd_strlen, kReadonly},
    {"getrange", 4, 4, cmd_getrange, kReadonly},
    {"setrange", 4, 4, cmd_setrange, kWrite},
    {"del", 2, kAnyArgs, count_keys<true>, kAllKeys},
    {"exists", 2, kAnyArgs, count_keys<false>, kReadonly | kAllKeys},
    {"type", 2, 2, cmd_type, kReadonly},
    {"rename", 3, 3, cmd_rename, 0},
    {"expire", 3, kAnyArgs, cmd_expire<1000, false>, 0},
    {"pexpire", 3, kAnyArgs, cmd_expire<1, false>, 0},
    {"expireat", 3, kAnyArgs, cmd_expire<1000, true>, 0},
    {"pexpireat", 3, kAnyArgs, cmd_expire<1, true>, 0},
    {"ttl", 2, 2, cmd_ttl<false>, kReadonly},
    {"pttl", 2, 2, cmd_ttl<true>, kReadonly},
    {"persist", 2, 2, cmd_persist, 0},
    {"dbsize", 1, 1, cmd_dbsize, kReadonly | kNoKeys},
    {"flushdb", 1, 2, cmd_flush, kNoKeys},
    {"flushall", 1, 2, cmd_flush, kNoKeys},
    {"keys", 2, 2, cmd_keys, kReadonly | kNoKeys},
    {"scan", 2, kAnyArgs, cmd_scan, kReadonly | kNoKeys},
};

}  // namespace

std::span<const CommandSpec> key_commands() {
  return kKeyCommands;
}

}  // namespace reactord::resp
