// A log-bucket latency histogram for reactord-load: 16 linear sub-buckets per power of two of
// nanoseconds (at most 6.25 % between a value and its bucket's upper bound), the exact maximum
// beside it. One per worker thread, merged at the end; not thread-safe.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>

namespace reactor::load {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;  // 16 sub-buckets per octave
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

  // Records one latency in nanoseconds (negative values count as 0).
  void record(int64_t ns) {
    const uint64_t v = ns < 0 ? 0 : static_cast<uint64_t>(ns);
    ++counts_[index_of(v)];
    ++count_;
    sum_ += v;
    max_ = std::max(max_, v);
  }

  void merge(const LatencyHistogram& other) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    max_ = std::max(max_, other.max_);
  }

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0 : static_cast<double>(sum_) / count_; }

  // The value at quantile q (0..1): the upper bound of the bucket holding it, capped at the exact
  // maximum. 0 when empty.
  uint64_t quantile(double q) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_) + 0.5);
    rank = std::clamp<uint64_t>(rank, 1, count_);
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(upper_bound(i), max_);
    }
    return max_;
  }

  // Bucket of v: values below kSub have a bucket each; above, the octave (bit width) and the
  // kSubBits bits after the leading one.
  static int index_of(uint64_t v) {
    if (v < kSub) return static_cast<int>(v);
    const int width = std::bit_width(v);  // > kSubBits
    const int shift = width - 1 - kSubBits;
    const int sub = static_cast<int>((v >> shift) & (kSub - 1));
    return (shift + 1) * kSub + sub;
  }
  // Largest value in bucket i.
  static uint64_t upper_bound(int i) {
    if (i < kSub) return static_cast<uint64_t>(i);
    const int shift = i / kSub - 1;
    const uint64_t sub = static_cast<uint64_t>(i % kSub);
    const uint64_t low = (uint64_t{kSub} | sub) << shift;
    return low + ((uint64_t{1} << shift) - 1);
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
};

}  // namespace reactor::load
