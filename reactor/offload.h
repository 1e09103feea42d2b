// offload(fn): asyncio.to_thread. Runs fn on the blocking thread pool while the calling fiber
// waits; the loop goes on running other fibers. Use it for anything that may block: files, fsync,
// DNS, a library without a non-blocking API.
//
// If the fiber is cancelled or its deadline passes, offload returns at once (Cancelled or
// DeadlineExceeded); fn still runs to completion on the pool and its result is dropped.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/reactor.h"
#include "reactor/reply.h"

namespace reactor {

// Sets the pool's size; takes effect if called before the first offload (default 4). Any thread.
void set_offload_threads(size_t n);

// Counts of the pool (process-wide). Any thread.
struct OffloadCounts {
  uint64_t queued = 0;
  uint64_t running = 0;
  uint64_t done = 0;
};
OffloadCounts offload_counts();

namespace detail {
// Queues job on the pool. Any thread.
void offload_submit(absl::AnyInvocable<void()> job);
}  // namespace detail

// Loop thread, inside a fiber. Returns fn's value (Status for void fn); rethrows fn's exception.
template <class F, class R = std::invoke_result_t<F>>
auto offload(F&& fn, Deadline deadline = kNoDeadline)
    -> std::conditional_t<std::is_void_v<R>, absl::Status, absl::StatusOr<R>> {
  auto reply = std::make_shared<detail::Reply<R>>();
  reply->waiter = detail::current_fiber();
  detail::offload_submit(
      detail::make_reply_job(reply, Reactor::current()->inbox(), std::forward<F>(fn)));
  return detail::await_reply(*reply, deadline, "offload");
}

}  // namespace reactor
