// Private to the io_uring backend (uring_backend.cc, uring_send.cc): the tags of an SQE's
// user_data and the records a CQE finds through it.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "backends/uring_backend.h"

namespace reactor::uring_detail {

// user_data of an SQE: an Op pointer (8-byte aligned, tag 0), an Acceptor, SendQueue or Receiver
// pointer tagged with kTagAcceptor, kTagSend or kTagRecv, a fixed-file update (kTagFiles), or one
// of the small constants below.
constexpr uint64_t kIgnoreData = 0;  // cancel SQEs: their own CQEs carry nothing we need
constexpr uint64_t kWakeupData = 1;  // the read on the wakeup eventfd
constexpr uint64_t kTagMask = 7;
constexpr uint64_t kTagAcceptor = 2;
constexpr uint64_t kTagSend = 3;
// A FILES_UPDATE of the fixed-file table: (slot << 4) | (8 if it clears the slot) | kTagFiles.
constexpr uint64_t kTagFiles = 4;
constexpr uint64_t kFilesClear = 8;
constexpr uint64_t kTagRecv = 5;
// Wakeup messages (IORING_OP_MSG_RING): the CQE the message posts in the woken ring carries
// kWakeupMsgData; the sender's own CQE, which only a failed message posts (CQE_SKIP_SUCCESS), the
// woken backend's pointer tagged with kTagWakeupMsg.
constexpr uint64_t kTagWakeupMsg = 6;
constexpr uint64_t kWakeupMsgData = kTagWakeupMsg;

// The io_uring backend whose loop runs on this thread and sends wakeups as ring messages
// (Options::msg_ring): set by its first poll(), cleared by its destructor.
extern constinit thread_local UringBackend* t_msg_sender;

// Newer than liburing 2.3's header: the ring takes min_wait_usec in io_uring_getevents_arg (the
// field liburing 2.3 calls `pad`), Linux 6.12.
constexpr unsigned kFeatMinTimeout = 1U << 15;  // IORING_FEAT_MIN_TIMEOUT

inline std::string closed_message(const char* what, int fd) {
  return absl::StrCat(what, " on fd ", fd, ": fd closed while the operation was pending");
}

}  // namespace reactor::uring_detail

namespace reactor {

// One SQE submitted for a fiber, from preparation to its CQE. Pooled; reused only after the CQE.
struct UringBackend::Op {
  detail::Fiber* fiber = nullptr;
  int fd = -1;
  int32_t res = 0;
  uint32_t cqe_flags = 0;
  bool done = false;    // the CQE arrived
  bool closed = false;  // close(fd) cancelled it
  bool linked = false;  // in FdState::ops
  bool output = false;  // a send or writev
  Op* prev = nullptr;
  Op* next = nullptr;            // FdState::ops, or the free list
  msghdr msg{};                  // recvmsg/sendmsg (readv/writev on sockets)
  std::byte* copy_to = nullptr;  // provided-buffer recv: the caller's span
  size_t copy_len = 0;
};

// A fiber waiting on a SendQueue for room or for it to drain. Lives on the fiber's stack; close()
// unlinks every waiter before it gives the queue up, so a waiter touches the queue only while
// still linked.
struct UringBackend::SendWaiter {
  detail::Fiber* fiber = nullptr;
  bool linked = false;
};

// async_send: a socket's outgoing bytes. At most one SEND is in flight per queue, covering
// `inflight` (which nobody touches until its CQE); sends append to `pending`, which the next SEND
// carries, so bytes keep their order and sends of one loop iteration are coalesced. After close()
// a queue with a SEND in flight is detached and goes back to the free list at its CQE.
struct UringBackend::SendQueue {
  int fd = -1;
  std::vector<std::byte> inflight;
  std::vector<std::byte> pending;
  bool in_flight = false;
  bool dirty = false;     // on dirty_sends_
  bool detached = false;  // fd closed
  int error = 0;          // errno of a failed SEND, for the next call on the fd
  // send_lent: a ring buffer (its id, or -1) whose bytes [lent_data, +lent_len) go before
  // `pending`, from the buffer itself; back to the ring once sent (or the fd is given up).
  int32_t lent_bid = -1;
  bool lent_in_flight = false;  // the SEND in flight carries the lent bytes
  const std::byte* lent_data = nullptr;
  size_t lent_len = 0;
  Deadline deadline{};  // of the latest send that queued bytes: close waits at most until then
  std::vector<SendWaiter*> waiters;
  SendQueue* next_free = nullptr;

  size_t queued() const {
    return inflight.size() + pending.size() + (lent_bid >= 0 ? lent_len : 0);
  }
  bool has_unsent() const { return lent_bid >= 0 || !pending.empty(); }
};

// lent_recv: an fd's multishot receive and what it received that nobody took yet. Chunks are ring
// buffers in arrival order (or the receiver's own `fallback` buffer, after the ring ran dry), each
// given back to the ring once taken whole: by the next call after recv_lent lent it, or as recv
// copies its last byte. Attached to its fd until close(); then it lives until its final CQE, the
// end of a fallback receive in flight and the return of a fiber that waited on it.
struct UringBackend::Receiver {
  static constexpr uint16_t kFallback = 0xffff;  // the chunk is in `fallback`, not the ring
  struct Chunk {
    uint16_t bid;
    uint32_t begin;  // bytes of it already taken
    uint32_t end;
  };
  int fd = -1;
  bool armed = false;        // the multishot is in flight (until its final CQE)
  bool cancel_sent = false;  // paused: too much received and not taken
  bool detached = false;     // fd closed
  bool eof = false;          // the peer closed: after the chunks, every call returns end of stream
  bool nobufs = false;       // the last multishot ended for want of ring buffers
  bool busy = false;         // a fiber receives through `fallback` now
  int error = 0;             // errno, for the next call once the chunks are taken
  int32_t lent = -1;         // bid of the chunk recv_lent lent out, until the next call
  std::vector<Chunk> ready;  // FIFO from `head`
  size_t head = 0;
  detail::Fiber* waiter = nullptr;  // parked in next_chunk or wait_receiver
  std::unique_ptr<std::byte[]> fallback;
  Receiver* prev = nullptr;  // UringBackend::receivers_
  Receiver* next = nullptr;

  bool has_chunk() const { return head < ready.size(); }
  size_t queued() const { return ready.size() - head; }
};

}  // namespace reactor
