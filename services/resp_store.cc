#include "services/resp_store.h"

#include <chrono>
#include <limits>

#include "reactor/reactor.h"

namespace reactord {
namespace {

// Matches a `[...]` set at the start of p (just after '['); advances p past the closing ']' (or
// to its end if unclosed, as Redis does).
bool match_set(std::string_view& p, char c) {
  bool negate = false, hit = false;
  if (!p.empty() && p.front() == '^') {
    negate = true;
    p.remove_prefix(1);
  }
  while (!p.empty() && p.front() != ']') {
    if (p.front() == '\\' && p.size() >= 2) {
      p.remove_prefix(1);
      if (p.front() == c) hit = true;
      p.remove_prefix(1);
    } else if (p.size() >= 3 && p[1] == '-') {
      char lo = p[0], hi = p[2];
      if (lo > hi) std::swap(lo, hi);
      if (c >= lo && c <= hi) hit = true;
      p.remove_prefix(3);
    } else {
      if (p.front() == c) hit = true;
      p.remove_prefix(1);
    }
  }
  if (!p.empty()) p.remove_prefix(1);  // ']'
  return negate ? !hit : hit;
}

}  // namespace

bool resp_glob_match(std::string_view p, std::string_view s) {
  // Iterative, with backtracking to the last '*' only: linear in practice, never exponential.
  std::string_view star_p, star_s;
  bool have_star = false;
  for (;;) {
    if (!p.empty() && p.front() == '*') {
      while (!p.empty() && p.front() == '*') p.remove_prefix(1);
      if (p.empty()) return true;
      star_p = p;
      star_s = s;
      have_star = true;
      continue;
    }
    if (s.empty()) return p.empty();
    bool ok = false;
    if (!p.empty()) {
      std::string_view rest = p.substr(1);
      switch (p.front()) {
        case '?':
          ok = true;
          break;
        case '[':
          ok = match_set(rest, s.front());
          break;
        case '\\':
          if (rest.empty()) {
            ok = s.front() == '\\';
          } else {
            ok = rest.front() == s.front();
            rest.remove_prefix(1);
          }
          break;
        default:
          ok = p.front() == s.front();
      }
      if (ok) {
        p = rest;
        s.remove_prefix(1);
        continue;
      }
    }
    if (!have_star) return false;
    star_s.remove_prefix(1);  // let the last '*' take one more byte
    p = star_p;
    s = star_s;
  }
}

int64_t resp_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

RespStore::~RespStore() {
  *alive_ = false;
  // In the daemon the shards have ended (their fibers with them); in a test the store may die on
  // its loop while the fiber sleeps: it wakes, sees alive_ false and ends.
  if (reactor::Reactor::current() == nullptr) return;
  if (expiry_task_.valid()) expiry_task_.cancel();
  if (free_task_.valid()) free_task_.cancel();
  if (migrate_task_.valid()) migrate_task_.cancel();
}

RespStore::Map::iterator RespStore::locate(std::string_view key) {
  auto it = map_.find(key);
  if (it != map_.end() || old_.empty()) return it;
  auto old = old_.find(key);
  if (old == old_.end()) return map_.end();
  it = map_.insert(old_.extract(old)).position;  // the node itself moves: views into it stay
  return it;
}

RespStore::Map::iterator RespStore::find_live(std::string_view key) {
  loop_thread_.check();
  auto it = locate(key);
  if (it != map_.end() && it->second.expire_ms != 0 && it->second.expire_ms <= resp_now_ms()) {
    remove(it);
    stats_.expired.add();
    return map_.end();
  }
  return it;
}

const RespEntry* RespStore::peek(std::string_view key) {
  auto it = find_live(key);
  return it == map_.end() ? nullptr : &it->second;
}

const RespEntry* RespStore::get(std::string_view key) {
  const RespEntry* e = peek(key);
  (e ? stats_.hits : stats_.misses).add();
  return e;
}

void RespStore::set(std::string_view key, std::string value, int64_t expire_ms, bool keep_ttl) {
  auto it = find_live(key);
  if (it == map_.end()) {
    it = insert_new(key, std::move(value));
    account(cost(it->first, it->second), 0);
  } else {
    account(value.size(), it->second.value.size());
    it->second.value = std::move(value);
  }
  if (!keep_ttl) index_expiry(it, expire_ms);
  publish_counts();
}

bool RespStore::erase(std::string_view key) {
  auto it = find_live(key);
  if (it == map_.end()) return false;
  remove(it);
  return true;
}

std::optional<RespEntry> RespStore::take(std::string_view key) {
  auto it = find_live(key);
  if (it == map_.end()) return std::nullopt;
  RespEntry e = std::move(it->second);
  it->second.value.clear();
  account(0, e.value.size());
  remove(it);
  return e;
}

bool RespStore::set_expire(std::string_view key, int64_t expire_ms) {
  auto it = find_live(key);
  if (it == map_.end()) return false;
  index_expiry(it, expire_ms);
  publish_counts();
  return true;
}

RespStore::Map::iterator RespStore::insert_new(std::string_view key, std::string value) {
  if (!old_.empty()) {
    migrate_some(2);  // ahead of the inserts: old_ empties before map_ fills up
  } else if (map_.size() >= incremental_from_ &&
             static_cast<double>(map_.size() + 2) >
                 static_cast<double>(map_.bucket_count()) * map_.max_load_factor()) {
    // This insert would rehash every node at once: grow incrementally instead.
    old_.swap(map_);
    map_.max_load_factor(old_.max_load_factor());
    map_.reserve(2 * old_.size());
    start_migrating();
  }
  return map_.emplace(std::string(key), RespEntry{std::move(value), 0}).first;
}

size_t RespStore::migrate_some(size_t max) {
  loop_thread_.check();
  size_t n = 0;
  while (n < max && !old_.empty()) {
    map_.insert(old_.extract(old_.begin()));
    ++n;
  }
  if (old_.empty()) Map().swap(old_);  // give back the old bucket table
  return n;
}

void RespStore::start_migrating() {
  if (migrate_task_.valid() && !migrate_task_.done()) return;
  reactor::Reactor* r = reactor::Reactor::current();
  if (r == nullptr) return;  // no loop (a unit test of the store): the inserts and lookups move it
  // On failure (no stack) the inserts and lookups still move two nodes each.
  auto task = r->spawn("resp-grow", [this, alive = alive_] {
    while (*alive && migrate_some(kMigrateBatch) > 0) {
      reactor::yield();
      if (reactor::cancelled()) return;
    }
  });
  if (task.ok()) migrate_task_ = *std::move(task);
}

void RespStore::clear() {
  loop_thread_.check();
  if (map_.empty() && old_.empty()) return;
  auto cleared = std::make_unique<Cleared>();
  cleared->map.swap(map_);
  cleared->expiry.swap(expiry_);
  pending_plain_ += cleared->map.size();
  cleared_.push_back(std::move(cleared));
  if (!old_.empty()) {  // freed after the first: the index, which points into both, goes first
    auto rest = std::make_unique<Cleared>();
    rest->map.swap(old_);
    pending_plain_ += rest->map.size();
    cleared_.push_back(std::move(rest));
  }
  publish_counts();
  start_freeing();
}

size_t RespStore::free_some(size_t max) {
  loop_thread_.check();
  size_t n = 0;
  while (n < max && !cleared_.empty()) {
    Cleared& c = *cleared_.front();
    if (!c.expiry.empty()) {
      c.expiry.erase(c.expiry.begin());
    } else if (!c.map.empty()) {
      auto it = c.map.begin();
      account(0, cost(it->first, it->second));
      c.map.erase(it);
      --pending_plain_;
    } else {
      cleared_.erase(cleared_.begin());  // its empty tables: no work left
      continue;
    }
    ++n;
  }
  pending_free_.store(pending_plain_, std::memory_order_relaxed);
  return n;
}

size_t RespStore::size() const {
  loop_thread_.check();
  return map_.size() + old_.size();
}

std::vector<std::string> RespStore::keys(std::string_view pattern) {
  loop_thread_.check();
  const int64_t now = resp_now_ms();
  std::vector<std::string> out;
  for (const Map* m : {&map_, &old_}) {
    for (const auto& [k, e] : *m) {
      if (e.expire_ms != 0 && e.expire_ms <= now) continue;
      if (pattern.empty() || resp_glob_match(pattern, k)) out.push_back(k);
    }
  }
  return out;
}

uint64_t RespStore::scan(uint64_t cursor, std::string_view pattern, size_t count,
                         std::vector<std::string>& out) {
  loop_thread_.check();
  // cursor: bucket index in the low 32 bits; above it a tag of the table walked: its bucket count
  // and whether it is the old table (a table that changed between steps restarts the walk). While
  // the table grows the walk takes the old table first, then the new one: nodes only move from
  // old to new, and neither table rehashes meanwhile, so a key present throughout is either still
  // in the old table when its bucket is walked or already in the new one.
  const auto tag_of = [](const Map& m, bool old) -> uint64_t {
    return ((m.bucket_count() & 0xffff) + 1) | (old ? uint64_t{1} << 17 : 0);
  };
  const uint64_t want = cursor >> 32;
  bool in_old = !old_.empty();
  size_t b = 0;
  if (cursor != 0) {
    if (!old_.empty() && want == tag_of(old_, true)) {
      b = static_cast<size_t>(cursor & 0xffffffffu);
    } else if (want == tag_of(map_, false)) {
      in_old = false;
      b = static_cast<size_t>(cursor & 0xffffffffu);
    }
  }
  const int64_t now = resp_now_ms();
  size_t visited = 0;
  for (;;) {
    const Map& m = in_old ? old_ : map_;
    const size_t buckets = m.bucket_count();
    for (; b < buckets && visited < count; ++b, ++visited) {
      for (auto it = m.begin(b); it != m.end(b); ++it) {
        if (it->second.expire_ms != 0 && it->second.expire_ms <= now) continue;
        if (pattern.empty() || resp_glob_match(pattern, it->first)) out.push_back(it->first);
      }
    }
    if (b < buckets) return (tag_of(m, in_old) << 32) | b;
    if (!in_old) return 0;
    in_old = false;  // the old table done: on to the new one
    b = 0;
  }
}

size_t RespStore::expire_due(int64_t now_ms, size_t max) {
  loop_thread_.check();
  size_t n = 0;
  while (n < max && !expiry_.empty() && expiry_.begin()->first <= now_ms) {
    remove(locate(expiry_.begin()->second));
    ++n;
  }
  stats_.expired.add(n);
  if (n > 0) publish_counts();
  return n;
}

void RespStore::remove(Map::iterator it) {
  if (it->second.expire_ms != 0) expiry_.erase({it->second.expire_ms, it->first});
  account(0, cost(it->first, it->second));
  map_.erase(it);
  publish_counts();
}

void RespStore::index_expiry(Map::iterator it, int64_t expire_ms) {
  RespEntry& e = it->second;
  if (e.expire_ms == expire_ms) return;
  if (e.expire_ms != 0) expiry_.erase({e.expire_ms, it->first});
  e.expire_ms = expire_ms;
  if (expire_ms != 0) {
    expiry_.emplace(expire_ms, it->first);
    start_expiry();
  }
}

void RespStore::account(size_t add, size_t sub) {
  used_plain_ = used_plain_ + add - sub;
  used_.store(used_plain_, std::memory_order_relaxed);
}

void RespStore::publish_counts() {
  count_.store(map_.size() + old_.size(), std::memory_order_relaxed);
  expiring_.store(expiry_.size(), std::memory_order_relaxed);
  pending_free_.store(pending_plain_, std::memory_order_relaxed);
}

void RespStore::start_expiry() {
  if (expiry_task_.valid() && !expiry_task_.done()) return;
  reactor::Reactor* r = reactor::Reactor::current();
  if (r == nullptr) return;  // no loop (a unit test of the store): the lazy check only
  // On failure (no stack) the next expiry set retries; the lazy check works meanwhile.
  auto task = r->spawn("resp-expiry", [this, alive = alive_] {
    for (;;) {
      if (!reactor::sleep_for(kExpireTick).ok() || !*alive) return;
      while (expire_due(resp_now_ms(), kExpireBatch) == kExpireBatch) {
        reactor::yield();
        if (reactor::cancelled() || !*alive) return;
      }
      if (expiry_.empty()) return;  // restarted by the next expiry set
    }
  });
  if (task.ok()) expiry_task_ = *std::move(task);
}

void RespStore::start_freeing() {
  if (free_task_.valid() && !free_task_.done()) return;
  reactor::Reactor* r = reactor::Reactor::current();
  absl::StatusOr<reactor::Task<void>> task = absl::UnavailableError("no loop");
  if (r != nullptr) {
    task = r->spawn("resp-free", [this, alive = alive_] {
      while (free_some(kFreeBatch) > 0) {
        reactor::yield();
        if (reactor::cancelled() || !*alive) return;
      }
    });
  }
  if (task.ok()) {
    free_task_ = *std::move(task);
    return;
  }
  // No loop (a unit test of the store), or no stack for a fiber: free them now.
  while (free_some(std::numeric_limits<size_t>::max()) > 0) {
  }
}

}  // namespace reactord
