// The one mechanism behind call_on() and offload(): a function runs elsewhere (another reactor,
// the blocking pool), its value or exception goes into a shared Reply, and a completion posted to
// the caller's reactor wakes the waiting fiber. The caller may give up (deadline, cancel): the
// Reply outlives it, and a late completion finds no waiter.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/reactor.h"

namespace reactor::detail {

template <class R>
using ReplyResult = std::conditional_t<std::is_void_v<R>, absl::Status, absl::StatusOr<R>>;

template <class R>
struct Reply {
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value{};
  std::exception_ptr error;
  bool done = false;        // caller's loop thread
  Fiber* waiter = nullptr;  // caller's loop thread
};

// A job that runs fn wherever it is run, keeps its value or exception in `reply`, and posts the
// completion to `reply_to` as its last act (so the wakeup may go with the next poll of the loop
// running it, if any: Backend::wakeup_deferred). Any thread.
template <class R, class F>
auto make_reply_job(std::shared_ptr<Reply<R>> reply, std::shared_ptr<Inbox> reply_to, F&& fn) {
  return [reply = std::move(reply), reply_to = std::move(reply_to),
          fn = std::forward<F>(fn)]() mutable {
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
      } else {
        reply->value.emplace(fn());
      }
    } catch (...) {
      reply->error = std::current_exception();
    }
    reply_to->post(
        [reply] {
          reply->done = true;
          if (reply->waiter != nullptr) wake(reply->waiter);
        },
        /*defer_wakeup=*/true);
  };
}

// Waits for the reply: its value (rethrowing fn's exception), or DeadlineExceeded / Cancelled.
// Loop thread, inside the fiber that made the reply.
template <class R>
ReplyResult<R> await_reply(Reply<R>& reply, Deadline deadline, const char* op) {
  while (!reply.done) {
    absl::Status s = park(deadline, op);
    if (!s.ok()) {
      reply.waiter = nullptr;
      return s;
    }
  }
  if (reply.error) std::rethrow_exception(reply.error);
  if constexpr (std::is_void_v<R>) {
    return absl::OkStatus();
  } else {
    return std::move(*reply.value);
  }
}

}  // namespace reactor::detail
