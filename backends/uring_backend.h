// The io_uring backend: completion mode. Each input call (and each send with async_send off)
// prepares an SQE that carries the caller's buffer and parks the fiber; a send on a socket copies
// its bytes into the socket's outgoing queue and returns (uring_send.cc). poll() submits every
// SQE prepared since the last poll, one SEND per queue with bytes, and waits for completions in
// one io_uring_enter, then wakes the fibers whose operations completed.
//
// Ownership of the caller's buffer. For an operation that parks, the kernel owns the buffer
// (usually on the fiber's stack) from submission until the operation's CQE. So when a deadline
// passes or the fiber is cancelled, the backend submits an async cancel for the operation and
// waits, not cancellably, for the original CQE before returning: DeadlineExceeded / Cancelled if
// the cancel won, the operation's own result if it completed first (received bytes are never
// dropped, an accepted fd never lost). close(fd) cancels everything pending on fd
// (IORING_ASYNC_CANCEL_FD|ALL, submitted at once), then closes it; the fibers waiting get
// FailedPrecondition "... closed ..." when their CQEs arrive.
//
// Operation records are backend-private and pooled; a CQE finds its record through user_data, and a
// record is reused only after its final CQE. Ring set-up (uring_setup.h, on the loop thread) tries
// SINGLE_ISSUER|DEFER_TASKRUN, then COOP_TASKRUN, then no flags (with SQPOLL asked for:
// SQPOLL|SINGLE_ISSUER, then SQPOLL; poll and submission in uring_poll.cc); setup_mode() says which
// it got. docs/backends.md describes the choices and their measurements.
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "backends/uring_buffer_ring.h"
#include "reactor/backend.h"
#include "reactor/fiber.h"
#include "reactor/stats.h"
#include "reactor/thread_check.h"

namespace reactor {

class UringBackend final : public Backend {
 public:
  struct Options {
    unsigned sq_entries = 2048;
    unsigned cq_entries = 8192;
    // Receive through a provided-buffer ring and copy into the caller's span. Off by default: the
    // span API then costs one more copy than recv straight into the span (docs/backends.md).
    bool provided_buffers = false;
    unsigned buffer_count = 512;  // a power of two
    unsigned buffer_size = 16 * 1024;
    // Sends that do not wait (uring_send.cc): send/writev on a socket copy the bytes into the
    // connection's outgoing queue and return; poll() submits one SEND per connection with the next
    // batch, so one io_uring_enter carries every connection's sends. The fiber waits only once
    // `send_queue_bytes` are queued on the fd. Off: every send waits for its own completion.
    bool async_send = true;
    size_t send_queue_bytes = 256 * 1024;
    // send/writev on a socket first try the system call with MSG_DONTWAIT, and go through the
    // ring only when the socket's buffer is full (or another send on the fd is still queued or in
    // flight). With async_send only sends of at least `send_first_min` bytes try it (a large send
    // then goes to the kernel without a copy); without it every send does, which saves the SQE,
    // the CQE and two fiber switches of a waiting send (docs/backends.md has the measurements).
    bool send_first = true;
    size_t send_first_min = 64 * 1024;
    // A recv that follows one which left the socket empty asks the kernel to wait for data before
    // trying (IORING_RECVSEND_POLL_FIRST): in a ping-pong the socket is empty then.
    bool poll_first = true;
    // "Left the socket empty" is the previous receive's CQE without IORING_CQE_F_SOCK_NONEMPTY
    // (Linux 5.19; TCP reports it), where the kernel has it; else (or off) a short receive.
    bool sock_nonempty_hint = true;
    // One multishot accept per listener where the kernel has it (5.19); off: a single-shot
    // accept per accept() call, as on older kernels.
    bool multishot_accept = true;
    // The first set-up level to try (tests force the fallbacks with it).
    int first_setup_level = 0;
    // SQPOLL (off by default: the SQ thread burns a CPU while awake): the kernel's SQ thread takes
    // SQEs from the ring, so poll() makes no io_uring_enter to submit while that thread is awake
    // (only to wake it, IORING_SQ_NEED_WAKEUP, or to wait when the loop has nothing to do). It
    // sleeps after `sqpoll_idle_ms` without work; `sqpoll_cpu` >= 0 pins it. Set-up levels 3-4
    // only: a kernel that refuses SQPOLL fails creation.
    bool sqpoll = false;
    int sqpoll_cpu = -1;
    unsigned sqpoll_idle_ms = 1000;
    // Register the ring's fd (io_uring_register_ring_fd, 5.18) so each io_uring_enter skips the
    // fd lookup; ignored where the kernel refuses it.
    bool register_ring_fd = true;
    // IORING_SETUP_NO_SQARRAY (Linux 6.6) where the kernel has it: the kernel takes SQEs in ring
    // order, without reading the SQ index array for each.
    bool no_sqarray = true;
    // Registered (fixed) files for connection sockets: the first operation on an accepted,
    // connected or sent-on socket puts it in the ring's file table at the slot of its fd number
    // (an IORING_OP_FILES_UPDATE SQE ahead of the operation's, in the same submission), and its
    // SQEs carry IOSQE_FIXED_FILE, so the kernel takes no file reference (fget/fput, two atomics)
    // per operation. close() clears the slot (another SQE, ahead of any later use of the number).
    // Sockets with fd numbers at or above the table's size (the smaller of `fixed_file_slots` and
    // RLIMIT_NOFILE) go without. Off where the kernel lacks a sparse table (5.19) or FILES_UPDATE.
    bool fixed_files = true;
    unsigned fixed_file_slots = 65536;
    // recv_lent (uring_recv.cc): one multishot RECV per fd (Linux 6.0) selecting buffers from the
    // provided-buffer ring (5.19) — `lent_buffer_count` buffers of `lent_buffer_size` bytes per
    // ring, unless provided_buffers already made one — and the caller reads the ring's buffer
    // in place. Off (or without the kernel's support): lends_buffers() is false.
    // Off by default under ThreadSanitizer: with its shadow memory the daemon's RSS under the
    // reliability suites' slow reader grew 9.3-10.0 MiB with lent receives against 6.8 without,
    // past their 8 MiB bound (4.5 MiB in a plain debug build). REACTOR_URING_LENT_RECV=1 turns it
    // on there (the lent-receive tests do).
#if defined(REACTOR_TSAN)
    bool lent_recv = false;
#else
    bool lent_recv = true;
#endif
    // Ring entries, a power of two (1,008 buffers fit the 4 MiB mapping, see uring_buffer_ring.h).
    unsigned lent_buffer_count = 1024;
    unsigned lent_buffer_size = 4096;
    // Batched waits (off at 0): a poll that waits for completions asks the kernel for as many
    // as the previous poll reaped (at most kMinWaitEvents; a plain wait for one after a poll
    // that reaped one or none) and returns early with fewer only once `min_wait_us` has passed
    // (the enter's min_wait_usec, IORING_FEAT_MIN_TIMEOUT, Linux 6.12). Under load one
    // io_uring_enter then serves many requests, each at most `min_wait_us` later; a lone
    // connection's wait is a plain one and costs no latency. Not with SQPOLL; off where the
    // kernel lacks it (with a notice when the value is not the default).
    unsigned min_wait_us = BackendParams::kDefaultUringMinWaitUs;
    // Cross-thread wakeup by ring message (IORING_OP_MSG_RING, Linux 5.18) where the waking
    // thread runs an io_uring loop of its own: wakeup() submits a message SQE through that
    // loop's ring at once instead of writing the eventfd, and the woken ring takes a CQE instead
    // of completing and re-arming a read. wakeup_deferred() (call_on's request and reply) leaves
    // the SQE for that loop's next poll, or its end_run: no system call of its own. wakeup()
    // never defers: a fiber that posts and then blocks its thread until the target reacts (a
    // join) would wait forever. Other threads, and this one off, write the eventfd, which stays
    // armed. A message the kernel could not deliver falls back to the eventfd (docs/backends.md
    // has the measurements).
    bool msg_ring = true;
  };
  static constexpr unsigned kMinWaitEvents = 32;

  // Which ring set-up flags the kernel accepted, best first (the last two with SQPOLL).
  enum class SetupMode : uint8_t {
    kSingleIssuerDeferTaskrun,
    kCoopTaskrun,
    kPlain,
    kSqpollSingleIssuer,
    kSqpoll
  };

  // Creates the ring, probes the required opcodes and arms the wakeup eventfd. Fails with the errno
  // of io_uring_setup (EPERM, ENOSYS, ...) or FailedPrecondition naming a missing opcode. Loop
  // thread (the ring is bound to the thread that creates it).
  static absl::StatusOr<std::unique_ptr<UringBackend>> create(Options options);
  static absl::StatusOr<std::unique_ptr<UringBackend>> create() {
    return create(Options{});
  }
  ~UringBackend() override;  // Loop thread.

  // Any thread.
  std::string_view name() const override {
    return "io_uring";
  }
  // Loop thread, inside a fiber.
  absl::StatusOr<int> accept(int fd, sockaddr_storage* peer, Deadline deadline) override;
  absl::Status connect(int fd, const sockaddr* addr, socklen_t len, Deadline deadline) override;
  absl::StatusOr<size_t> recv(int fd, std::span<std::byte> buf, Deadline deadline) override;
  absl::StatusOr<size_t> send(int fd, std::span<const std::byte> buf, Deadline deadline) override;
  absl::StatusOr<size_t> readv(int fd, std::span<const iovec> iov, Deadline deadline) override;
  absl::StatusOr<size_t> writev(int fd, std::span<const iovec> iov, Deadline deadline) override;
  absl::Status wait(int fd, Interest interest, Deadline deadline) override;
  absl::Status flush(int fd, Deadline deadline) override;
  // Where the ring has a multishot receive and a buffer ring (Options::lent_recv). Any thread.
  bool lends_buffers() const override {
    return lend_;
  }
  // Loop thread, inside a fiber (uring_recv.cc).
  absl::StatusOr<std::span<const std::byte>> recv_lent(int fd, Deadline deadline) override;
  void release_lent(int fd) override;
  // async_send and lent_recv (uring_send.cc): the queue's next SEND goes from the lent ring buffer
  // itself, which returns to the ring at its CQE, when nothing is queued on fd before it.
  absl::StatusOr<size_t> send_lent(int fd, std::span<const std::byte> buf,
                                   Deadline deadline) override;
  // Loop thread. Cancels the listener's multishot accept; accept() hands out what it accepted
  // before its final CQE and what the kernel's queue still holds then (sweep_stopped), then
  // returns OutOfRange. Single-shot: cancels the accept in flight, then the same.
  void stop_accepting(int fd) override;
  // Loop thread. With bytes still queued and no fiber waiting to queue more, a close inside a
  // fiber first waits for them (until the deadline of the send that queued the last of them);
  // what could not be sent is cancelled and reported as the close's error.
  absl::Status close(int fd) override;
  // Loop thread, scheduler context.
  void poll(Duration timeout) override;
  // Any thread.
  void wakeup() override;
  void wakeup_deferred() override;
  // Loop thread: submits what is prepared (deferred wakeup messages among it).
  void end_run() override;
  // Any thread.
  void counters(std::vector<Counter>& out) const override;

  // Any thread (fixed at creation).
  SetupMode setup_mode() const {
    return setup_mode_;
  }
  // "SINGLE_ISSUER|DEFER_TASKRUN", "COOP_TASKRUN" or "none". Any thread.
  static std::string_view setup_mode_name(SetupMode mode);
  // Whether accept uses one multishot SQE per listener (Linux 5.19+). Any thread.
  bool multishot_accept() const {
    return multishot_accept_;
  }
  // Whether recv uses the provided-buffer ring (asked for, and registered). Any thread.
  bool provided_buffers() const {
    return provided_recv_;
  }
  // Whether sends on sockets are queued without waiting (Options::async_send). Any thread.
  bool async_send() const {
    return options_.async_send;
  }
  // The batched wait's min_wait_usec in force (Options::min_wait_us), 0 without. Any thread.
  unsigned min_wait_us() const {
    return min_wait_us_;
  }
  // Whether the kernel's SQ thread submits (Options::sqpoll). Any thread.
  bool sqpoll() const {
    return sqpoll_;
  }
  // Whether io_uring_enter goes through the registered ring fd. Any thread.
  bool registered_ring_fd() const {
    return ring_fd_registered_;
  }
  // Whether the ring was set up without the SQ index array (IORING_SETUP_NO_SQARRAY). Any thread.
  bool no_sqarray() const {
    return no_sqarray_;
  }
  // The size of the fixed-file table sockets go into (Options::fixed_files), 0 without one.
  // Any thread (fixed at creation).
  unsigned fixed_file_slots() const {
    return fixed_slots_;
  }
  // Whether wakeups from other io_uring loops come as ring messages (Options::msg_ring, where
  // the kernel has IORING_OP_MSG_RING). Any thread (fixed at creation).
  bool msg_ring() const {
    return msg_ring_;
  }
  // A one-line summary for listings: set-up mode and features. Any thread.
  std::string describe() const;

 private:
  struct Op;
  struct Acceptor;
  struct AcceptWaiter;
  struct SendQueue;
  struct SendWaiter;
  struct Receiver;
  struct FdState {
    Op* ops = nullptr;     // operations in flight on this fd, until their final CQE
    bool drained = false;  // the last recv was short: the next finds the socket empty
    bool fixed = false;    // in the fixed-file table, at slot fd (Options::fixed_files)
    int8_t socket = 0;     // 1: a socket (accepted, connected or sent on), -1: not one, 0: unknown
    Acceptor* acceptor = nullptr;
    SendQueue* sendq = nullptr;    // async_send: the fd's outgoing bytes
    Receiver* receiver = nullptr;  // lent_recv: the fd's multishot receive, once recv_lent used it
  };

  UringBackend(Options options, SetupMode mode);
  absl::Status init(int level);  // set-up level, see uring_setup.h
  FdState& fd_state(int fd);

  // A send or writev of fd is queued or in flight in the ring: a direct send now could overtake it.
  bool output_in_flight(int fd) const;
  // The send_first attempt for `total` bytes: bytes sent, or -1 with errno (EAGAIN: go through
  // the ring).
  ssize_t try_send_now(int fd, msghdr* msg, size_t total);
  // send and writev on a socket (uring_send.cc): try_send_now, then the queue or a waiting op.
  absl::StatusOr<size_t> send_socket(int fd, std::span<const iovec> iov, Deadline deadline,
                                     const char* what);
  bool is_socket(int fd);  // fstat once per fd number, cached in FdState::socket
  // async_send: copies up to the queue's room from iov into fd's queue, waiting for room first.
  absl::StatusOr<size_t> queue_send(int fd, std::span<const iovec> iov, size_t total,
                                    Deadline deadline, const char* what);
  SendQueue* send_queue(int fd);  // creates it
  absl::Status wait_send_queue(SendQueue* q, Deadline deadline, const char* what);
  void submit_send(SendQueue* q);
  void flush_sends();  // poll(): one SEND per queue with bytes and none in flight
  void handle_send_cqe(SendQueue* q, int32_t res);
  void wake_send_waiters(SendQueue* q, const absl::Status& status);
  void release_send_queue(SendQueue* q);
  // close(): waits for or gives up the fd's queue; its error (or OK) and whether a send is in
  // flight that the close's cancel must end.
  absl::Status detach_send_queue(int fd, bool* in_flight);

  io_uring_sqe* get_sqe();
  // Before the SQE of an operation on fd is taken: puts a socket's file in the fixed-file table
  // (an update SQE ahead of the operation's). After: marks the SQE IOSQE_FIXED_FILE if it is.
  void use_fixed_file(int fd);
  void mark_fixed(io_uring_sqe* sqe, int fd) const {
    if (static_cast<size_t>(fd) < fds_.size() && fds_[static_cast<size_t>(fd)].fixed) {
      sqe->flags |= IOSQE_FIXED_FILE;
    }
  }
  void handle_files_cqe(uint64_t user_data, int32_t res);
  int enter_submit();  // io_uring_submit, counted; with SQPOLL sqpoll_submit_now()
  // SQPOLL: publishes the SQEs prepared so far to the SQ thread (the ring's tail) and wakes the
  // thread only if it sleeps (IORING_SQ_NEED_WAKEUP): no system call while it is awake.
  void sqpoll_submit();
  // SQPOLL: sqpoll_submit(), then waits (yielding the CPU) until the SQ thread has issued every SQE
  // published, as a submitting io_uring_enter would have before it returned: close() needs its
  // cancel issued before ::close releases the fd number, a full SQ needs room.
  int sqpoll_submit_now();
  void poll_sqpoll(Duration timeout);
  // A waiting poll's one io_uring_enter with min_wait_usec (min_wait_us_ > 0): submits what is
  // prepared and waits for `events` completions, or min_wait_us_ and one, or `timeout`.
  void enter_batched_wait(Duration timeout, unsigned events);
  // Handles every completion the CQ holds (bounded by its size); returns how many.
  unsigned reap();
  void handle_cqe(uint64_t user_data, int32_t res, uint32_t flags);
  void arm_wakeup();
  void wake(bool defer);  // wakeup() and wakeup_deferred()
  void eventfd_wakeup();  // writes the eventfd's token. Any thread.
  // Prepares the wakeup message to `target` in this ring (the calling thread's loop) and, unless
  // `defer`, submits it. Loop thread.
  void send_wakeup_message(UringBackend* target, bool defer);
  // A wakeup message failed (the sender's CQE): wakes `target` through its eventfd if it still
  // exists. Loop thread (the sender's).
  void wakeup_message_failed(UringBackend* target, int32_t res);

  Op* new_op(int fd);
  void free_op(Op* op);
  void link_op(Op* op);
  void unlink_op(Op* op);
  // Prepares the SQE (with `prep`), parks until the final CQE (cancelling on deadline/cancel) and
  // returns the CQE's result, or the park status if the cancel won. Closed ops say so.
  // An op whose result is a new fd (accept) closes it if close() cancelled the op meanwhile.
  // `releasable`: the op's SQE points at no memory of the fiber's (a poll), so the fiber's stack
  // may be released while it waits (Reactor::allow_stack_release).
  template <class Prep>
  absl::StatusOr<int32_t> run_op(int fd, Deadline deadline, const char* what, Prep prep,
                                 bool returns_fd = false, uint32_t* cqe_flags = nullptr,
                                 bool releasable = false);
  // readv/writev through the ring: RECVMSG/SENDMSG (MSG_NOSIGNAL: EPIPE, never SIGPIPE) on a
  // socket, READV/WRITEV on anything else (pipes, files; ENOTSOCK switches), waiting for
  // readiness when a non-socket answers EAGAIN.
  absl::StatusOr<size_t> vectored(int fd, std::span<const iovec> iov, Deadline deadline,
                                  bool output, bool socket);
  absl::StatusOr<size_t> recv_provided(int fd, std::span<std::byte> buf, Deadline deadline,
                                       bool* fall_back);

  // lent_recv (uring_recv.cc). The fd's receiver, or null if recv_lent never ran on it.
  Receiver* receiver_of(int fd) const {
    return static_cast<size_t>(fd) < fds_.size() ? fds_[static_cast<size_t>(fd)].receiver : nullptr;
  }
  // Waits until fd's receiver has a chunk and returns the receiver, or null at the end of the
  // stream (*eof) or on an error (*status), arming the multishot, and receiving into a buffer of
  // the receiver's own when the ring ran dry.
  Receiver* next_chunk(int fd, Deadline deadline, absl::Status* status, bool* eof);
  const std::byte* chunk_data(const Receiver* r, uint16_t bid) const;
  // A single-shot RECV into memory of the backend's (not the fiber's: its stack may be released
  // meanwhile).
  absl::StatusOr<int32_t> recv_own_buffer(int fd, std::byte* buf, size_t len, Deadline deadline);
  void give_back_lent(Receiver* r);  // the chunk recv_lent lent, back to the ring
  absl::Status wait_receiver(int fd, Deadline deadline);
  absl::StatusOr<size_t> recv_copy(int fd, std::span<const iovec> iov, Deadline deadline);
  void arm_receiver(Receiver* r);
  void recycle_chunk(Receiver* r, uint16_t bid);
  void handle_recv_cqe(Receiver* r, int32_t res, uint32_t flags);
  // Parks the running fiber as r's waiter (releasably).
  absl::Status park_on(Receiver* r, Deadline deadline, const char* what);
  // close(): wakes the waiter, gives every buffer back; the receiver goes when nothing is pending
  // on it (destroy_if_done). True if a multishot is still in flight.
  bool detach_receiver(Receiver* r);
  bool destroy_if_done(Receiver* r);
  void destroy_receiver(Receiver* r);

  absl::StatusOr<int> accept_single(int fd, sockaddr_storage* peer, Deadline deadline);
  absl::StatusOr<int> sweep_stopped(Acceptor* a, sockaddr_storage* peer);
  Acceptor* acceptor(int fd);  // creates it
  void arm_acceptor(Acceptor* a);
  void handle_accept_cqe(Acceptor* a, int32_t res, uint32_t flags);
  void destroy_acceptor(Acceptor* a);

  Options options_;
  SetupMode setup_mode_;
  io_uring ring_{};
  bool ring_ready_ = false;
  LoopThreadCheck loop_thread_{"io_uring backend"};  // the creating thread
  bool multishot_accept_ = false;
  bool has_cancel_fd_ = false;       // IORING_ASYNC_CANCEL_FD (5.19)
  bool sock_nonempty_ = false;       // asked for, and IORING_CQE_F_SOCK_NONEMPTY on recv (5.19)
  bool sqpoll_ = false;              // set up with IORING_SETUP_SQPOLL
  bool ring_fd_registered_ = false;  // io_uring_register_ring_fd (5.18) took
  bool no_sqarray_ = false;          // IORING_SETUP_NO_SQARRAY (6.6) took
  unsigned fixed_slots_ = 0;         // the sparse fixed-file table's size (0: none)
  unsigned min_wait_us_ = 0;         // Options::min_wait_us, where the kernel has it
  unsigned wait_target_ = 0;         // completions the last poll reaped, at most kMinWaitEvents
  bool fixed_failed_ = false;        // an update failed: no more sockets go in (loop thread)
  // slot_fds_[n] == n once fd n was registered: the FILES_UPDATE SQE points here, and the value
  // never changes, so the pointer stays valid however late the kernel (an SQ thread) reads it.
  std::unique_ptr<int[]> slot_fds_;

  int eventfd_ = -1;
  uint64_t eventfd_value_ = 0;
  std::atomic<bool> wakeup_pending_{false};
  std::atomic<uint64_t> wakeups_{0};  // written from any thread
  bool msg_ring_ = false;             // Options::msg_ring, where the kernel has IORING_OP_MSG_RING
  bool msg_failed_ = false;           // a wakeup message failed (noticed once; loop thread)
  bool live_ = false;                 // in the rings wakeup messages may go to (uring_backend.cc)

  std::vector<FdState> fds_;
  std::vector<std::unique_ptr<Op[]>> op_blocks_;
  Op* free_ops_ = nullptr;
  Acceptor* acceptors_ = nullptr;  // every acceptor alive, attached or draining

  // The provided-buffer ring (Options::provided_buffers or lent_recv), when registered.
  std::unique_ptr<UringBufferRing> buffers_;
  bool provided_recv_ = false;     // recv() copies out of buffers_ (Options::provided_buffers)
  bool lend_ = false;              // recv_lent: multishot receives into buffers_
  Receiver* receivers_ = nullptr;  // every receiver alive, attached or draining

  std::vector<std::unique_ptr<SendQueue>> send_queues_;  // every queue, attached, detached or free
  SendQueue* free_send_queues_ = nullptr;
  std::vector<SendQueue*> dirty_sends_;  // queues with bytes to submit at the next poll

  RelaxedCounter direct_sends_;
  RelaxedCounter queued_sends_;
  RelaxedCounter poll_first_recvs_;
  RelaxedCounter send_sqes_;
  RelaxedCounter send_queue_waits_;
  RelaxedCounter sqes_submitted_;
  RelaxedCounter cqes_reaped_;
  RelaxedCounter enter_calls_;
  RelaxedCounter cancels_;
  RelaxedCounter accept_multishot_cqes_;
  RelaxedCounter swept_accepts_;  // taken by sweep_stopped()
  RelaxedCounter provided_buffer_recvs_;
  RelaxedCounter provided_buffer_enobufs_;
  RelaxedCounter sqpoll_wakeups_;
  RelaxedCounter fixed_file_registrations_;
  RelaxedCounter fixed_file_errors_;
  RelaxedCounter lent_recv_arms_;
  RelaxedCounter lent_recv_cqes_;
  RelaxedCounter lent_recv_pauses_;
  RelaxedCounter lent_recv_fallbacks_;
  RelaxedCounter lent_sends_;             // send_lent calls that sent from the ring buffer itself
  RelaxedCounter batched_waits_;          // enters with min_wait_usec
  RelaxedCounter batched_waits_short_;    // ... that returned with fewer completions than asked
  RelaxedCounter wakeup_messages_;        // wakeup messages this ring sent to other rings
  RelaxedCounter wakeup_message_errors_;  // ... that the kernel could not deliver
};

// Creates the io_uring backend for the calling thread's loop, or says why it cannot (the registry
// adds the likely cause). Loop thread. Default options, except that three environment variables
// change them, for measurement and tests: REACTOR_URING_PROVIDED_BUFFERS=N turns on provided
// buffers, N of them (1: the default count); REACTOR_URING_SEND_FIRST=0 turns off send_first;
// REACTOR_URING_POLL_FIRST=0 turns off poll_first; REACTOR_URING_ASYNC_SEND=0 turns off
// async_send; REACTOR_URING_SOCK_NONEMPTY=0 turns off sock_nonempty_hint. `params` asks for
// SQPOLL (the daemon's runtime.io_uring_sqpoll*); so does REACTOR_URING_SQPOLL=1 (tests run the
// conformance suite under SQPOLL with it; REACTOR_URING_SQPOLL=0 turns it off whatever `params`
// say); REACTOR_URING_REGISTER_RING_FD=0 turns off register_ring_fd; REACTOR_URING_NO_SQARRAY=0
// turns off no_sqarray; REACTOR_URING_FIXED_FILES=0 turns off fixed_files;
// REACTOR_URING_LENT_RECV=0 turns off lent_recv; REACTOR_URING_MIN_WAIT_US=N sets min_wait_us
// (tests run the conformance suite with it), which `params` (runtime.io_uring_min_wait_us) sets
// otherwise.
absl::StatusOr<std::unique_ptr<Backend>> make_uring_backend(const BackendParams& params = {});

}  // namespace reactor
