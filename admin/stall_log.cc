#include "admin/stall_log.h"

namespace reactord {

uint64_t StallLog::begin(size_t shard, std::string_view kind, nlohmann::json report) {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t id = next_id_++;
  ++total_;
  ++counts_[{shard, std::string(kind)}];
  report["id"] = id;
  reports_.emplace_back(id, std::move(report));
  while (reports_.size() > kKeep) reports_.pop_front();
  return id;
}

void StallLog::update(uint64_t id, nlohmann::json report) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [rid, r] : reports_) {
    if (rid == id) {
      report["id"] = id;
      r = std::move(report);
      return;
    }
  }
}

void StallLog::record_duration(int64_t ns) {
  std::lock_guard<std::mutex> lock(mu_);
  durations_.record(ns);
}

reactor::Histogram::Snapshot StallLog::durations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return durations_.snapshot();
}

uint64_t StallLog::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

uint64_t StallLog::count(size_t shard, std::string_view kind) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find({shard, std::string(kind)});
  return it == counts_.end() ? 0 : it->second;
}

nlohmann::json StallLog::reports_json() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [id, r] : reports_) out.push_back(r);
  return out;
}

}  // namespace reactord
