#include "services/echo.h"

#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include "services/read_buffer.h"

namespace reactord {
namespace {

constexpr size_t kEchoRead = 16 * 1024;

// One read buffer per loop thread (a shard), shared by every echo connection of that shard: a
// parked connection then holds no buffer at all. Safe only where a recv touches the caller's
// buffer just when it returns (Backend::recv_holds_buffer() false: the readiness backends), and
// because a connection whose reply cannot go out at once copies the rest to its own buffer before
// it waits: no fiber ever suspends while the shared bytes are its.
std::byte* shard_read_buffer() {
  thread_local std::unique_ptr<std::byte[]> buffer;
  if (!buffer) buffer = std::make_unique_for_overwrite<std::byte[]>(kEchoRead);
  return buffer.get();
}

// Writes buf back: what goes out without waiting from buf itself, the rest from a copy, so buf
// may be reused by another fiber as soon as this one suspends.
absl::Status echo_back(Connection& c, std::span<const std::byte> buf, reactor::Deadline deadline) {
  absl::StatusOr<size_t> sent = c.write(buf, reactor::kPastDeadline);
  if (!sent.ok() && !absl::IsDeadlineExceeded(sent.status())) return sent.status();
  const size_t done = sent.ok() ? *sent : 0;
  if (done == buf.size()) return absl::OkStatus();
  const std::vector<std::byte> rest(buf.begin() + static_cast<std::ptrdiff_t>(done), buf.end());
  return c.write_all(rest, deadline);
}

struct GiveBlock {
  void operator()(std::byte* p) const { BufferBlocks::give(p); }
};

}  // namespace

void serve_echo(Connection& c, const EchoOptions& options) {
  reactor::Backend& backend = reactor::Reactor::current()->backend();
  if (backend.lends_buffers()) {
    // The backend's buffer, read in place and written back from (a send that waits keeps it
    // lent). A connection waiting for input holds no buffer, and the wait lets its stack go.
    for (;;) {
      const reactor::Deadline deadline = timeout_deadline(options.idle_timeout);
      absl::StatusOr<std::span<const std::byte>> n = c.read_lent(deadline);
      if (!n.ok() || n->empty()) return;
      c.count_requests();
      if (!c.write_lent_all(*n, deadline).ok()) return;
    }
  }
  if (!backend.recv_holds_buffer()) {
    std::byte* const shared = shard_read_buffer();
    for (;;) {
      const reactor::Deadline deadline = timeout_deadline(options.idle_timeout);
      absl::StatusOr<size_t> n = c.read(std::span(shared, kEchoRead), deadline);
      if (!n.ok() || *n == 0) return;
      c.count_requests();
      if (!echo_back(c, std::span(shared, *n), deadline).ok()) return;
    }
  }
  // A completion backend fills the buffer while the fiber waits: each connection needs its own,
  // on the heap so that the stack stays small. An idle one gives its pages back and waits for
  // readability instead (Connection::idle_read_until), so its stack is released too.
  static_assert(kEchoRead == BufferBlocks::kBytes);
  const std::unique_ptr<std::byte[], GiveBlock> own(static_cast<std::byte*>(BufferBlocks::take()));
  for (;;) {
    const reactor::Deadline deadline = timeout_deadline(options.idle_timeout);
    const reactor::Deadline read_until = c.idle_read_until(deadline);
    absl::StatusOr<size_t> n = c.read(std::span(own.get(), kEchoRead), read_until);
    if (Connection::idle_read_ended(n.status(), read_until, deadline)) {
      release_whole_pages(own.get(), kEchoRead);
      if (!c.wait_readable(deadline).ok()) return;
      continue;
    }
    if (!n.ok() || *n == 0) return;
    c.count_requests();
    if (!c.write_all(std::span(own.get(), *n), deadline).ok()) return;
  }
}

}  // namespace reactord
