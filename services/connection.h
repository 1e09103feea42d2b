// What a service's connection handler sees: its connection (with byte and request counting), its
// shard, and the drain protocol.
//
// A shard runs each accepted connection in its own fiber, calling the service's handler with a
// Connection. Handlers are plain blocking-style code on fibers. Drain (SIGTERM) works like this:
// a handler marks the time it waits for the next request with begin_idle()/end_idle(); on drain
// the shard cancels connections that are idle (their pending read returns Cancelled) and lets
// busy ones finish their request, after which begin_idle() returns false and the handler closes.
// A connection that has not sent a byte yet is served its first request even while draining (it
// may have been accepted in the drain's first instant), within its idle and the drain's timeout.
// A streaming handler that never goes idle (echo) runs until its peer closes or the drain timeout
// cancels it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "reactor/net.h"
#include "reactor/reactor.h"
#include "reactor/stats.h"
#include "reactor/time.h"
#include "services/read_buffer.h"

namespace reactord {

// What a service reserves in its parser before each read.
inline constexpr size_t kReadChunk = 16 * 1024;
// A pipelined burst's replies are written together, but not more than this at a time.
inline constexpr size_t kFlushBytes = 64 * 1024;
// Connection::linger() drops what the peer still sends for up to this long, or this many bytes.
inline constexpr reactor::Duration kLingerTime = std::chrono::seconds(1);
inline constexpr size_t kLingerBytes = 64 * 1024;

// The deadline of a timeout from now; zero or less means no limit. Any thread.
inline reactor::Deadline timeout_deadline(reactor::Duration timeout) {
  return timeout <= reactor::Duration::zero() ? reactor::kNoDeadline
                                              : reactor::deadline_after(timeout);
}

// Per shard and service. Written by the shard's loop thread, read from any thread.
struct ServiceStats {
  reactor::RelaxedCounter connections_accepted;
  reactor::RelaxedCounter connections_closed;
  reactor::RelaxedCounter connections_rejected;  // over max_connections
  reactor::RelaxedCounter connections_active;    // gauge
  reactor::RelaxedCounter bytes_in;
  reactor::RelaxedCounter bytes_out;
  reactor::RelaxedCounter requests;  // http requests, resp commands, echo reads
};

// The shards as a handler may see them. Set up before the shards start; read-only afterwards.
struct ShardView {
  size_t index = 0;
  size_t count = 1;
  std::vector<reactor::Reactor*> reactors;  // every shard's reactor, by index
};

class Connection {
 public:
  // Loop thread of the shard.
  Connection(reactor::Stream stream, ServiceStats& stats, const ShardView& shard);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // I/O that counts bytes into the service's stats. Loop thread, inside the connection's fiber.
  absl::StatusOr<size_t> read(std::span<std::byte> buf, reactor::Deadline deadline);
  // Where the backend lends buffers (Backend::lends_buffers): the next bytes received (empty at
  // end of stream), in the backend's memory until the next read or close on this connection.
  absl::StatusOr<std::span<const std::byte>> read_lent(reactor::Deadline deadline);
  // Gives the bytes read_lent lent back to the backend before the next read. Loop thread.
  void release_lent() { reactor::Reactor::current()->backend().release_lent(stream_.fd()); }
  // Whether the shard's backend lends buffers (read_lent). Fixed at construction.
  bool lends_buffers() const { return lends_; }

  // What read_into() did.
  enum class ReadStep : uint8_t {
    kRead,    // bytes arrived
    kWaited,  // idle for a while: buffers' pages given back, waited until readable; read again
    kDone,    // the peer closed (*status OK), or *status says why not: close
  };
  // One read of request bytes into `input` (a ParserInput), for a parsing service. `idle`: nothing
  // is buffered and begin_idle() was called (the wait for the next request); read_into ends the
  // idle mark. Where the backend lends buffers `input` parses the lent bytes where they lie
  // (ParserInput::parse_in_place: no copy unless bytes were already buffered, and only a partial
  // request's tail is copied, by the next read_into, before they go back; no buffer held while
  // waiting, and the wait lets the stack go); elsewhere `input` grows by a
  // read chunk that the kernel fills, and an idle connection past idle_read_until gives the pages
  // of `input` and `out` (its reply buffer) back before it waits. Loop thread, inside the fiber.
  template <class Input>
  ReadStep read_into(Input& input, std::string& out, bool idle, reactor::Deadline deadline,
                     absl::Status* status);
  // Some of buf (one send: at least one byte unless buf is empty).
  absl::StatusOr<size_t> write(std::span<const std::byte> buf, reactor::Deadline deadline);
  absl::Status write_all(std::span<const std::byte> buf, reactor::Deadline deadline);
  // write_all of bytes read_lent lent, which the backend may send from its buffer without a copy
  // (Backend::send_lent): `buf` is not read again by the caller after this.
  absl::Status write_lent_all(std::span<const std::byte> buf, reactor::Deadline deadline);
  absl::Status write_all(std::string_view s, reactor::Deadline deadline) {
    return write_all(std::as_bytes(std::span(s.data(), s.size())), deadline);
  }
  // Idle connections give their memory back. With the shard releasing idle stacks
  // (runtime.release_idle_stacks_ms, Reactor::stack_release_after), a handler waiting for the
  // next request reads until idle_read_until(deadline) — half that period from now, or `deadline`
  // if sooner — and when that read ends early (idle_read_ended: DeadlineExceeded before
  // `deadline`) releases its buffers' pages (release_whole_pages) and waits with
  // wait_readable(deadline), which holds no buffer and lets the stack be released too.
  reactor::Deadline idle_read_until(reactor::Deadline deadline) const {
    if (release_after_ <= reactor::Duration::zero()) return deadline;
    return std::min(deadline, loop_->last_clock() + release_after_ / 2);
  }
  static bool idle_read_ended(const absl::Status& s, reactor::Deadline read_until,
                              reactor::Deadline deadline) {
    return read_until < deadline && absl::IsDeadlineExceeded(s);
  }
  // Until the connection is readable (or the deadline passes). Loop thread, inside the fiber.
  absl::Status wait_readable(reactor::Deadline deadline);
  void count_requests(uint64_t n = 1) {
    stats_.requests.add(n);
    requests_ += n;
  }
  // Writes `out` (nothing if empty) within `timeout` (zero or less: no limit) and clears it;
  // false if the write failed. Loop thread, inside the connection's fiber.
  bool flush(std::string& out, reactor::Duration timeout);
  // Before closing: shuts the write side down, then reads and drops what the peer still sends
  // (kLingerTime, kLingerBytes), so that closing with unread input does not reset the connection
  // and destroy the last reply before the peer reads it. Loop thread, inside the fiber.
  void linger();

  // Marks the wait for the next request. False when the daemon is draining and this connection
  // has had a request (or bytes of one): close now.
  // Loop thread.
  bool begin_idle();
  void end_idle() { idle_ = false; }
  bool idle() const { return idle_; }
  bool draining() const { return draining_; }

  // This connection's own counts and what it does now, for the shard's `conns` snapshot: plain
  // fields written by the connection's fiber and read by its shard's loop, the same thread.
  uint64_t bytes_in() const { return bytes_in_; }
  uint64_t bytes_out() const { return bytes_out_; }
  uint64_t requests() const { return requests_; }
  reactor::Deadline created() const { return created_; }
  // "draining", "idle" (waiting for the next request), "reading", "writing", or "running"
  // (between I/O: handling what it read). Loop thread.
  std::string_view state() const;

  reactor::Stream& stream() { return stream_; }
  const ShardView& shard() const { return shard_; }
  ServiceStats& stats() { return stats_; }

  // Used by the shard. Loop thread.
  void set_cancel(std::function<void()> cancel) { cancel_ = std::move(cancel); }
  // Starts the drain for this connection: cancels it now if idle after a request.
  void drain();
  void cancel() {
    if (cancel_) cancel_();
  }

 private:
  reactor::Stream stream_;
  ServiceStats& stats_;
  const ShardView& shard_;
  std::function<void()> cancel_;
  bool idle_ = false;
  bool draining_ = false;
  enum class Io : uint8_t { kNone, kReading, kWriting };
  Io io_ = Io::kNone;
  uint64_t bytes_in_ = 0, bytes_out_ = 0, requests_ = 0;
  reactor::Deadline created_;
  reactor::Reactor* loop_;           // the shard's
  reactor::Duration release_after_;  // loop_->stack_release_after(), or zero without a loop
  bool lends_;                       // the loop's backend lends buffers (Backend::lends_buffers)
};

// ---- implementation: inline, as every request makes these calls ----

inline absl::StatusOr<size_t> Connection::read(std::span<std::byte> buf,
                                               reactor::Deadline deadline) {
  io_ = Io::kReading;
  absl::StatusOr<size_t> n = stream_.read(buf, deadline);
  io_ = Io::kNone;
  if (n.ok()) {
    stats_.bytes_in.add(*n);
    bytes_in_ += *n;
  }
  return n;
}

inline absl::StatusOr<std::span<const std::byte>> Connection::read_lent(
    reactor::Deadline deadline) {
  io_ = Io::kReading;
  absl::StatusOr<std::span<const std::byte>> n =
      reactor::Reactor::current()->backend().recv_lent(stream_.fd(), deadline);
  io_ = Io::kNone;
  if (n.ok()) {
    stats_.bytes_in.add(n->size());
    bytes_in_ += n->size();
  }
  return n;
}

inline absl::Status Connection::wait_readable(reactor::Deadline deadline) {
  io_ = Io::kReading;
  absl::Status s =
      reactor::Reactor::current()->backend().wait(stream_.fd(), reactor::Interest::kRead, deadline);
  io_ = Io::kNone;
  return s;
}

inline absl::StatusOr<size_t> Connection::write(std::span<const std::byte> buf,
                                                reactor::Deadline deadline) {
  io_ = Io::kWriting;
  absl::StatusOr<size_t> n = stream_.write(buf, deadline);
  io_ = Io::kNone;
  if (n.ok()) {
    stats_.bytes_out.add(*n);
    bytes_out_ += *n;
  }
  return n;
}

inline absl::Status Connection::write_all(std::span<const std::byte> buf,
                                          reactor::Deadline deadline) {
  io_ = Io::kWriting;
  absl::Status s = stream_.write_all(buf, deadline);
  io_ = Io::kNone;
  if (s.ok()) {
    stats_.bytes_out.add(buf.size());
    bytes_out_ += buf.size();
  }
  return s;
}

inline absl::Status Connection::write_lent_all(std::span<const std::byte> buf,
                                               reactor::Deadline deadline) {
  reactor::Backend& backend = reactor::Reactor::current()->backend();
  io_ = Io::kWriting;
  absl::Status s;
  while (!buf.empty()) {
    absl::StatusOr<size_t> n = backend.send_lent(stream_.fd(), buf, deadline);
    if (!n.ok()) {
      s = n.status();
      break;
    }
    stats_.bytes_out.add(*n);
    bytes_out_ += *n;
    buf = buf.subspan(*n);
  }
  io_ = Io::kNone;
  return s;
}

template <class Input>
Connection::ReadStep Connection::read_into(Input& input, std::string& out, bool idle,
                                           reactor::Deadline deadline, absl::Status* status) {
  if (lends_) {
    // The last lent bytes go back with this read (recv_lent): what no request consumed of them
    // moves to the parser's own buffer first.
    input.settle();
    absl::StatusOr<std::span<const std::byte>> r = read_lent(deadline);
    if (idle) end_idle();
    if (!r.ok() || r->empty()) {
      *status = r.status();
      return ReadStep::kDone;
    }
    // Parsed where they lie when nothing else is buffered; they stay ours until the next read.
    input.parse_in_place(std::string_view(reinterpret_cast<const char*>(r->data()), r->size()));
    return ReadStep::kRead;
  }
  std::span<char> space = input.prepare(kReadChunk);
  const reactor::Deadline read_until = idle ? idle_read_until(deadline) : deadline;
  absl::StatusOr<size_t> n = read(std::as_writable_bytes(space), read_until);
  input.commit(n.ok() ? *n : 0);
  if (idle && idle_read_ended(n.status(), read_until, deadline)) {
    // Idle for a while: its buffers' pages go back, and the wait lets the stack go too.
    input.release_pages();
    release_whole_pages(out.data(), out.capacity());
    *status = wait_readable(deadline);
    end_idle();
    return status->ok() ? ReadStep::kWaited : ReadStep::kDone;
  }
  if (idle) end_idle();
  *status = n.status();
  return n.ok() && *n > 0 ? ReadStep::kRead : ReadStep::kDone;
}

using ConnectionHandler = std::function<void(Connection&)>;

// One configured service as the shards run it. Shared by every shard; read-only after start but
// for the atomics.
struct ServiceRuntime {
  std::string name;
  std::string kind;
  std::string bound_address;  // as bound, e.g. "127.0.0.1:41234"
  ConnectionHandler handler;
  std::atomic<uint32_t> max_connections{0};          // across shards; SIGHUP may change it
  std::atomic<int64_t> active{0};                    // across shards
  std::vector<std::unique_ptr<ServiceStats>> stats;  // by shard
};

}  // namespace reactord
