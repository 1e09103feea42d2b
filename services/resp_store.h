// One shard's keys for the resp service: string values with an optional expiry, the memory they
// account for, and the shard's background expiry.
//
// Expiry is kept as Redis keeps it: an absolute Unix time in milliseconds. A key past its expiry
// is never returned: every lookup checks it and removes an expired key (the lazy check). The
// store also indexes expiring keys by time; a fiber on the shard's loop (started by the first
// expiry set there) removes due keys in batches of kExpireBatch, yielding between batches, every
// kExpireTick, so that any number of keys expiring at once never holds the loop for long.
//
// clear() (FLUSHDB, FLUSHALL) empties the store at once but frees the old entries in the
// background: a second fiber frees kFreeBatch of them per slice, yielding between slices, since
// freeing a million keys in one go holds the loop for longer than the watchdog's threshold.
//
// Growth: std::unordered_map doubles its bucket table in one step, relinking every node — 150 ms
// at 700,000 keys and 360 ms at 1.4 million on this project's machine
// (perf/results/resp-growth-stalls-20261201.txt), past the watchdog's default threshold. So past
// kIncrementalGrowthFrom keys the store grows as Redis does: when the table is full, it becomes the
// old table and a new one with twice the buckets takes the inserts; nodes move from old to new
// (node handles: no copy, the expiry index's views stay valid) two per insert, on every lookup that
// finds a key in the old table, and kMigrateBatch per slice in a third fiber, so no single step
// relinks more than a batch. Lookups try the new table, then the old one.
//
// Memory: each key costs key bytes + value bytes + kEntryOverhead (the map node, the strings'
// headers and, for an expiring key, its index entry, rounded up). used_memory() is readable from
// any thread; the service compares the sum over its shards with its cap. Entries cleared but not
// yet freed still count, as Redis counts its lazily freed objects, until they are freed.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "reactor/stats.h"
#include "reactor/task.h"
#include "reactor/thread_check.h"
#include "reactor/time.h"

namespace reactord {

// Matches `s` against a Redis glob: `*` (any run), `?` (any byte), `[abc]`, `[^a-z]` (sets and
// ranges, `^` negates), `\x` (x literally). Any thread.
bool resp_glob_match(std::string_view pattern, std::string_view s);

// Now as Unix time in milliseconds: what expiry times are compared with. Any thread.
int64_t resp_now_ms();

struct RespEntry {
  std::string value;
  int64_t expire_ms = 0;  // Unix ms; 0: never
};

// Per shard, written by the shard's loop thread, read from any thread (INFO).
struct RespShardStats {
  reactor::RelaxedCounter commands;  // commands run by connections of this shard
  reactor::RelaxedCounter connections_received;
  reactor::RelaxedCounter connected;  // gauge
  reactor::RelaxedCounter hits;       // keyspace_hits: reads that found their key
  reactor::RelaxedCounter misses;
  reactor::RelaxedCounter expired;  // keys removed past their expiry (lazily or in background)
};

// Built on any thread; every method but the any-thread accessors: the owning shard's loop thread,
// which is the first thread to call one (debug builds check that no other thread does).
class RespStore {
 public:
  static constexpr size_t kEntryOverhead = 96;
  static constexpr size_t kExpireBatch = 200;
  static constexpr reactor::Duration kExpireTick = std::chrono::milliseconds(10);
  static constexpr size_t kFreeBatch = 2000;
  static constexpr size_t kIncrementalGrowthFrom = 16384;
  static constexpr size_t kMigrateBatch = 2000;

  // incremental_growth_from: the table size from which it grows incrementally (tests lower it).
  explicit RespStore(size_t incremental_growth_from = kIncrementalGrowthFrom)
      : incremental_from_(incremental_growth_from) {}
  ~RespStore();
  RespStore(const RespStore&) = delete;
  RespStore& operator=(const RespStore&) = delete;

  // The live entry at key (an expired one is removed first), or null. Counts a hit or a miss.
  const RespEntry* get(std::string_view key);
  // As get(), without counting.
  const RespEntry* peek(std::string_view key);
  bool contains(std::string_view key) { return peek(key) != nullptr; }
  // Sets key's value. expire_ms: the new expiry (0: none); keep_ttl keeps the current one.
  void set(std::string_view key, std::string value, int64_t expire_ms = 0, bool keep_ttl = false);
  // Changes a live key's value in place: fn(std::string&) edits it, the accounting follows.
  // Returns false if the key is absent (nothing called).
  template <class F>
  bool update(std::string_view key, F&& fn);
  // True if the key existed.
  bool erase(std::string_view key);
  // Removes key and returns its entry, if live.
  std::optional<RespEntry> take(std::string_view key);
  // Sets (expire_ms > 0) or clears (0) a live key's expiry; false if the key is absent.
  bool set_expire(std::string_view key, int64_t expire_ms);
  // Empties the store (size() is 0 at once); the entries are freed in the background (at once
  // without a loop).
  void clear();
  // Keys, expired ones included until removed (as Redis' DBSIZE).
  size_t size() const;

  // Live keys matching `pattern` (empty: all).
  std::vector<std::string> keys(std::string_view pattern);
  // One step of SCAN over this store from `cursor` (0: start): appends matching live keys of about
  // `count` buckets to out and returns the next cursor, 0 when done. A table resized between steps
  // restarts the walk (keys may repeat, none present throughout is missed).
  uint64_t scan(uint64_t cursor, std::string_view pattern, size_t count,
                std::vector<std::string>& out);

  // Removes up to `max` keys due at now_ms; returns how many.
  size_t expire_due(int64_t now_ms, size_t max);

  // Any thread.
  size_t used_memory() const { return used_.load(std::memory_order_relaxed); }
  size_t key_count() const { return count_.load(std::memory_order_relaxed); }
  size_t expires_count() const { return expiring_.load(std::memory_order_relaxed); }
  // Keys cleared and not yet freed (INFO's lazyfree_pending_objects).
  size_t pending_free() const { return pending_free_.load(std::memory_order_relaxed); }
  // True while nodes still move from an old table to the new one.
  bool growing() const { return !old_.empty(); }
  // Buckets of the table that takes inserts (tests: a change past incremental_growth_from keys
  // must be the start of a growth, never a rehash of every node).
  size_t table_buckets() const { return map_.bucket_count(); }
  RespShardStats& stats() { return stats_; }
  const RespShardStats& stats() const { return stats_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  using Map = std::unordered_map<std::string, RespEntry, Hash, std::equal_to<>>;
  // Expiring keys by time; the views point into the keys of the map beside it (node-based:
  // stable).
  using ExpiryIndex = std::set<std::pair<int64_t, std::string_view>>;
  // Entries clear() took out, freed by free_some(): the index first (it points into the map).
  struct Cleared {
    Map map;
    ExpiryIndex expiry;
  };

  static size_t cost(std::string_view key, const RespEntry& e) {
    return key.size() + e.value.size() + kEntryOverhead;
  }
  // The entry at key in map_ (moved there from old_ if it was there), expired or not, or end.
  Map::iterator locate(std::string_view key);
  // The live entry, an expired one removed.
  Map::iterator find_live(std::string_view key);
  // Inserts a new key into map_, growing incrementally when the table is full.
  Map::iterator insert_new(std::string_view key, std::string value);
  // Moves up to `max` nodes from old_ to map_; returns how many.
  size_t migrate_some(size_t max);
  void start_migrating();
  void remove(Map::iterator it);
  void index_expiry(Map::iterator it, int64_t expire_ms);
  void account(size_t add, size_t sub);
  void publish_counts();
  void start_expiry();
  // Frees up to `max` cleared entries; returns how many.
  size_t free_some(size_t max);
  void start_freeing();

  Map map_;
  Map old_;  // the table map_ grew from, while nodes still move out of it
  size_t incremental_from_;
  ExpiryIndex expiry_;
  std::vector<std::unique_ptr<Cleared>> cleared_;  // oldest first
  size_t pending_plain_ = 0;
  std::atomic<size_t> pending_free_{0};
  size_t used_plain_ = 0;
  std::atomic<size_t> used_{0};
  std::atomic<size_t> count_{0};
  std::atomic<size_t> expiring_{0};
  RespShardStats stats_;
  // The expiry, freeing and migrating fibers; `alive_` tells them the store still exists.
  reactor::Task<void> expiry_task_;
  reactor::Task<void> free_task_;
  reactor::Task<void> migrate_task_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  reactor::LoopThreadCheck loop_thread_{"RespStore", reactor::LoopThreadCheck::FirstUse{}};
};

template <class F>
bool RespStore::update(std::string_view key, F&& fn) {
  auto it = find_live(key);
  if (it == map_.end()) return false;
  const size_t before = it->second.value.size();
  fn(it->second.value);
  account(it->second.value.size(), before);
  return true;
}

}  // namespace reactord
