// call_on(target, fn): runs fn on another reactor's loop and waits for its value — the way one
// shard reaches state another shard owns (shared-nothing: the data never crosses threads, only
// the request and the answer do).
//
// By default fn runs in the target's scheduler context, between fibers: it must not suspend. The
// calling fiber waits (cancellably, with a deadline); if it gives up, fn may still run and its
// result is dropped. On the calling reactor itself, fn runs inline.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/reactor.h"
#include "reactor/reply.h"

namespace reactor {

// Loop thread, inside a fiber. Unavailable if the target reactor is shutting down.
// With in_fiber, fn runs in a new fiber on the target (named "call_on") and may suspend.
template <class F, class R = std::invoke_result_t<F>>
auto call_on(Reactor& target, F&& fn, Deadline deadline = kNoDeadline, bool in_fiber = false)
    -> std::conditional_t<std::is_void_v<R>, absl::Status, absl::StatusOr<R>> {
  if (&target == Reactor::current()) {
    if constexpr (std::is_void_v<R>) {
      fn();
      return absl::OkStatus();
    } else {
      return fn();
    }
  }
  auto reply = std::make_shared<detail::Reply<R>>();
  reply->waiter = detail::current_fiber();
  auto job = detail::make_reply_job(reply, Reactor::current()->inbox(), std::forward<F>(fn));
  // This fiber parks right after: the target's wakeup may go with this loop's next poll.
  const bool posted = in_fiber ? target.submit("call_on", std::move(job))
                               : target.inbox()->post(std::move(job), /*defer_wakeup=*/true);
  if (!posted) return absl::UnavailableError("call_on: the target reactor is shutting down");
  return detail::await_reply(*reply, deadline, "call_on");
}

}  // namespace reactor
