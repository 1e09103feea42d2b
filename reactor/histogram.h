// A log-linear histogram of durations from 1 us to 100 s: each decade is split into nine buckets
// (1-2, 2-3, ... 9-10 times its power of ten), plus an underflow and an overflow bucket. Every
// power of ten is a bucket boundary, so the coarse Prometheus buckets (1 us, 10 us, ... 100 s) are
// exact sums of fine ones, and histograms of different shards merge by adding counts.
//
// Written by one thread (relaxed load+store, no locked instruction), read from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace reactor {

// False in a build configured with -DREACTOR_STATS=OFF (benchmarks only): every counter and
// histogram write compiles to nothing, so the cost of the statistics can be measured.
#ifdef REACTOR_NO_STATS
inline constexpr bool kStatsEnabled = false;
#else
inline constexpr bool kStatsEnabled = true;
#endif

class Histogram {
 public:
  static constexpr int kDecades = 8;             // 1 us .. 100 s
  static constexpr size_t kFine = kDecades * 9;  // fine buckets inside the range
  static constexpr size_t kBuckets = kFine + 2;  // + underflow (< 1 us) + overflow

  // Upper bound (exclusive) of bucket i, in nanoseconds; the overflow bucket's is "infinite".
  static int64_t upper_bound_ns(size_t i);

  // Inline and the same few instructions for any value (a bit scan, a look-up, a compare, a
  // division): every slice, scheduling latency and poll records one.
  static size_t bucket_of(int64_t ns) {
    if (ns < 1000) return 0;
    if (ns >= kPow10[3 + kDecades]) return kBuckets - 1;
    // 2^b <= ns < 2^(b+1), so floor(log10 ns) is floor(b log10 2) or one more.
    const int b = 63 - __builtin_clzll(static_cast<uint64_t>(ns));
    int e = kLog10Pow2[b];
    if (ns >= kPow10[e + 1]) ++e;
    // 10^e <= ns < 10^(e+1): decade e - 3 from 1 us, and the leading digit 1..9.
    return static_cast<size_t>(e - 3) * 9 + static_cast<size_t>(ns / kPow10[e]);
  }

  // Single writer.
  void record(int64_t ns) {
    if constexpr (!kStatsEnabled) return;
    const size_t b = bucket_of(ns);
    buckets_[b].store(buckets_[b].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    sum_ns_.store(sum_ns_.load(std::memory_order_relaxed) + (ns > 0 ? ns : 0),
                  std::memory_order_relaxed);
  }

  // A plain copy, for reading and merging. Any thread.
  struct Snapshot {
    std::array<uint64_t, kBuckets> buckets{};
    uint64_t sum_ns = 0;
    uint64_t count() const;
    void merge(const Snapshot& other);
    // The q-quantile (0..1) in nanoseconds, interpolated inside its bucket; 0 when empty.
    int64_t quantile_ns(double q) const;
    // The change since `earlier` (for rates and windowed percentiles).
    Snapshot minus(const Snapshot& earlier) const;
  };
  Snapshot snapshot() const;

  // Relaxed reads of the totals, for counters derived from a histogram. Any thread.
  uint64_t count() const {
    uint64_t n = 0;
    for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
    return n;
  }
  uint64_t sum_ns() const { return sum_ns_.load(std::memory_order_relaxed); }

 private:
  static constexpr std::array<int64_t, 13> kPow10 = [] {
    std::array<int64_t, 13> p{};
    p[0] = 1;
    for (size_t i = 1; i < p.size(); ++i) p[i] = p[i - 1] * 10;
    return p;
  }();
  // floor(b * log10 2) for b = 0..63 (30103 / 100000 is exact enough for every b below 64).
  static constexpr std::array<int8_t, 64> kLog10Pow2 = [] {
    std::array<int8_t, 64> t{};
    for (int b = 0; b < 64; ++b)
      t[static_cast<size_t>(b)] = static_cast<int8_t>(b * 30103 / 100000);
    return t;
  }();

  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace reactor
