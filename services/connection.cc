#include "services/connection.h"

namespace reactord {

Connection::Connection(reactor::Stream stream, ServiceStats& stats, const ShardView& shard)
    : stream_(std::move(stream)),
      stats_(stats),
      shard_(shard),
      created_(reactor::Clock::now()),
      loop_(reactor::Reactor::current()),
      release_after_(loop_ != nullptr ? loop_->stack_release_after() : reactor::Duration::zero()),
      lends_(loop_ != nullptr && loop_->backend().lends_buffers()) {
  stats_.connections_accepted.add();
  stats_.connections_active.add();
}

Connection::~Connection() {
  stats_.connections_active.set(stats_.connections_active.get() - 1);
  stats_.connections_closed.add();
}

bool Connection::flush(std::string& out, reactor::Duration timeout) {
  if (out.empty()) return true;
  absl::Status s = write_all(out, timeout_deadline(timeout));
  out.clear();
  return s.ok();
}

void Connection::linger() {
  if (!stream_.shutdown_write().ok()) return;
  const reactor::Deadline until = reactor::deadline_after(kLingerTime);
  std::byte sink[2048];
  size_t dropped = 0;
  while (dropped < kLingerBytes) {
    absl::StatusOr<size_t> n = read(sink, until);
    if (!n.ok() || *n == 0) return;
    dropped += *n;
  }
}

bool Connection::begin_idle() {
  // A connection that has sent nothing yet waits for its first request even while draining: it
  // was accepted to be served (perhaps in the drain's first instant, from what the backend had
  // already taken off the listener), and closing it with its request in flight would reset it.
  // Its idle timeout, and the drain's timeout, bound the wait.
  if (draining_ && bytes_in_ > 0) return false;
  idle_ = true;
  return true;
}

std::string_view Connection::state() const {
  if (draining_) return "draining";
  if (idle_) return "idle";
  switch (io_) {
    case Io::kReading:
      return "reading";
    case Io::kWriting:
      return "writing";
    case Io::kNone:
      break;
  }
  return "running";
}

void Connection::drain() {
  draining_ = true;
  if (idle_ && bytes_in_ > 0) cancel();  // a fresh one waits for its first request (begin_idle)
}

}  // namespace reactord
