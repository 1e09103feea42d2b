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

  // Inline and a few instructions for any value: a bit scan, a table look-up, then at most four
  // compares (a binade [2^b, 2^(b+1)) holds at most four bucket bounds), no division. Every
  // slice, scheduling latency and poll records one.
  static size_t bucket_of(int64_t ns) {
    if (ns < 1000) return 0;
    const int b = 63 - __builtin_clzll(static_cast<uint64_t>(ns));
    size_t i = kFirstOfBinade[static_cast<size_t>(b)];
    // kUpper's overflow bound is above every int64_t: the scan ends there at the latest.
    while (static_cast<uint64_t>(ns) >= kUpper[i]) ++i;
    return i;
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
  // Bucket i holds [kUpper[i - 1], kUpper[i]): below 1 us, then 1..9 times each power of ten
  // from 1 us to 10 s in steps of its leading digit, then everything from 100 s on.
  static constexpr std::array<uint64_t, kBuckets> kUpper = [] {
    std::array<uint64_t, kBuckets> u{};
    u[0] = 1000;
    uint64_t decade = 1000;
    size_t i = 1;
    for (int d = 0; d < kDecades; ++d, decade *= 10) {
      for (uint64_t m = 2; m <= 10; ++m) u[i++] = decade * m;
    }
    u[kBuckets - 1] = ~uint64_t{0};
    return u;
  }();
  // The bucket of 2^b, for b = 0..63: where bucket_of's scan starts.
  static constexpr std::array<uint8_t, 64> kFirstOfBinade = [] {
    std::array<uint8_t, 64> t{};
    for (size_t b = 0; b < 64; ++b) {
      const uint64_t p = uint64_t{1} << b;
      size_t i = 0;
      while (p >= kUpper[i]) ++i;
      t[b] = static_cast<uint8_t>(i);
    }
    return t;
  }();

  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace reactor
