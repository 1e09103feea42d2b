#include "reactor/histogram.h"

#include <algorithm>
#include <limits>

namespace reactor {

int64_t Histogram::upper_bound_ns(size_t i) {
  return i + 1 < kBuckets ? static_cast<int64_t>(kUpper[i]) : std::numeric_limits<int64_t>::max();
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  for (size_t i = 0; i < kBuckets; ++i) s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return s;
}

uint64_t Histogram::Snapshot::count() const {
  uint64_t n = 0;
  for (uint64_t b : buckets) n += b;
  return n;
}

void Histogram::Snapshot::merge(const Snapshot& o) {
  for (size_t i = 0; i < kBuckets; ++i) buckets[i] += o.buckets[i];
  sum_ns += o.sum_ns;
}

Histogram::Snapshot Histogram::Snapshot::minus(const Snapshot& e) const {
  Snapshot d;
  for (size_t i = 0; i < kBuckets; ++i)
    d.buckets[i] = buckets[i] >= e.buckets[i] ? buckets[i] - e.buckets[i] : 0;
  d.sum_ns = sum_ns >= e.sum_ns ? sum_ns - e.sum_ns : 0;
  return d;
}

int64_t Histogram::Snapshot::quantile_ns(double q) const {
  const uint64_t n = count();
  if (n == 0) return 0;
  const double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(n);
  double seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    if (buckets[i] == 0) continue;
    if (seen + static_cast<double>(buckets[i]) >= rank) {
      const int64_t lo = i == 0 ? 0 : static_cast<int64_t>(kUpper[i - 1]);
      const int64_t hi = i == kBuckets - 1 ? lo * 2 : static_cast<int64_t>(kUpper[i]);
      const double frac = (rank - seen) / static_cast<double>(buckets[i]);
      return lo + static_cast<int64_t>(frac * static_cast<double>(hi - lo));
    }
    seen += static_cast<double>(buckets[i]);
  }
  return static_cast<int64_t>(kUpper[kBuckets - 2]);
}

}  // namespace reactor
