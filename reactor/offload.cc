#include "reactor/offload.h"

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace reactor {
namespace {

std::atomic<size_t> g_threads{4};
std::atomic<uint64_t> g_queued{0}, g_running{0}, g_done{0};

class Pool {
 public:
  explicit Pool(size_t n) {
    for (size_t i = 0; i < n; ++i) {
      std::thread t([this] { work(); });
      pthread_setname_np(t.native_handle(), "reactor-offload");
      t.detach();  // lives as long as the process; a blocked job must not hold up exit
    }
  }
  void submit(absl::AnyInvocable<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    g_queued.fetch_add(1, std::memory_order_relaxed);
    cv_.notify_one();
  }

 private:
  void work() {
    for (;;) {
      absl::AnyInvocable<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      g_queued.fetch_sub(1, std::memory_order_relaxed);
      g_running.fetch_add(1, std::memory_order_relaxed);
      job();
      job = nullptr;
      g_running.fetch_sub(1, std::memory_order_relaxed);
      g_done.fetch_add(1, std::memory_order_relaxed);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<absl::AnyInvocable<void()>> jobs_;
};

Pool& pool() {
  static Pool* p = new Pool(std::max<size_t>(1, g_threads.load()));  // never destroyed
  return *p;
}

}  // namespace

void set_offload_threads(size_t n) {
  g_threads.store(n);
}

OffloadCounts offload_counts() {
  return {g_queued.load(std::memory_order_relaxed), g_running.load(std::memory_order_relaxed),
          g_done.load(std::memory_order_relaxed)};
}

void detail::offload_submit(absl::AnyInvocable<void()> job) {
  pool().submit(std::move(job));
}

}  // namespace reactor
