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

class Histogram {
 public:
  static constexpr int kDecades = 8;             // 1 us .. 100 s
  static constexpr size_t kFine = kDecades * 9;  // fine buckets inside the range
  static constexpr size_t kBuckets = kFine + 2;  // + underflow (< 1 us) + overflow

  // Upper bound (exclusive) of bucket i, in nanoseconds; the overflow bucket's is "infinite".
  static int64_t upper_bound_ns(size_t i);
  static size_t bucket_of(int64_t ns);

  // Single writer.
  void record(int64_t ns) {
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

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace reactor
