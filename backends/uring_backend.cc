#include "backends/uring_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "backends/uring_ops.h"
#include "backends/uring_setup.h"
#include "reactor/error.h"
#include "reactor/notice.h"

namespace reactor {

constinit thread_local UringBackend* uring_detail::t_msg_sender = nullptr;

namespace {

using namespace uring_detail;  // NOLINT(build/namespaces): the backend's private tags

// Every ring a wakeup message may be sent to, for the sender's failure path: by the time the
// kernel reports a message undelivered its target may have been destroyed. Never freed (a backend
// may be destroyed during static destruction).
struct LiveRings {
  std::mutex mu;
  std::vector<const UringBackend*> rings;
};
LiveRings& live_rings() {
  static LiveRings* const live = new LiveRings;
  return *live;
}

// A listener's multishot accept is cancelled once this many connections wait to be taken, so a
// service that stops accepting leaves them in the kernel's backlog, as with epoll.
constexpr size_t kMaxReadyAccepts = 64;
constexpr int kAcceptFlags = SOCK_NONBLOCK | SOCK_CLOEXEC;
// At most this many connections are taken by a stopped listener's sweep (sweep_stopped): the
// connections that can wait in a queue are bounded by the backlog, at most net.core.somaxconn
// (4096 by default since Linux 5.4).
constexpr int kMaxSweptAccepts = 4096;

void fill_peer(int fd, sockaddr_storage* peer) {
  if (peer == nullptr) return;
  socklen_t len = sizeof *peer;
  // A connection reset since it was accepted has no peer name any more: report AF_UNSPEC.
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(peer), &len) != 0) {
    std::memset(peer, 0, sizeof *peer);
  }
}

absl::Status stopped_status(int fd) {
  return absl::OutOfRangeError(absl::StrCat("accept on fd ", fd, ": stopped accepting"));
}

}  // namespace

// A fiber waiting in accept() on a listener with a multishot accept. Lives on the fiber's stack and
// is unlinked before the fiber leaves accept().
struct UringBackend::AcceptWaiter {
  detail::Fiber* fiber = nullptr;
  int fd = -1;  // the connection handed over, when woken with OK
  bool linked = false;
  AcceptWaiter* prev = nullptr;
  AcceptWaiter* next = nullptr;
};

// A listener's multishot accept: connections accepted and not yet taken, and the fibers waiting.
// Attached to its fd until close(); then it drains (closing late connections) until its final CQE.
// stop_accepting() cancels the multishot but keeps the record attached: what the kernel accepted
// before the final CQE is still handed to accept(), which then reports the listener stopped.
struct UringBackend::Acceptor {
  int fd = -1;
  bool armed = false;        // the multishot SQE is in flight (until its final CQE)
  bool cancel_sent = false;  // throttled (too many connections wait to be taken), or stopped
  bool detached = false;     // the listener was closed
  bool stopped = false;      // stop_accepting(): never re-armed
  int error = 0;             // an errno for the next accept(), when no fiber waited for it
  int sweep_left = kMaxSweptAccepts;  // stopped: accepts sweep_stopped() may still take
  std::deque<int> ready;
  AcceptWaiter* head = nullptr;
  AcceptWaiter* tail = nullptr;
  Acceptor* prev = nullptr;  // UringBackend::acceptors_
  Acceptor* next = nullptr;

  void push(AcceptWaiter* w) {
    w->prev = tail;
    w->next = nullptr;
    (tail ? tail->next : head) = w;
    tail = w;
    w->linked = true;
  }
  void remove(AcceptWaiter* w) {
    (w->prev ? w->prev->next : head) = w->next;
    (w->next ? w->next->prev : tail) = w->prev;
    w->prev = w->next = nullptr;
    w->linked = false;
  }
  AcceptWaiter* pop() {
    AcceptWaiter* w = head;
    if (w != nullptr) remove(w);
    return w;
  }
};

// ---- set-up ----

absl::StatusOr<std::unique_ptr<UringBackend>> UringBackend::create(Options options) {
  // SQPOLL has levels of its own; asked for, it is never given up for a ring without it.
  const int first = options.sqpoll ? kUringFirstSqpollLevel
                                   : std::clamp(options.first_setup_level, 0, kUringLastSetupLevel);
  const int last = options.sqpoll ? kUringLastSqpollLevel : kUringLastSetupLevel;
  for (int level = first; level <= last; ++level) {
    std::unique_ptr<UringBackend> b(new UringBackend(options, static_cast<SetupMode>(level)));
    absl::Status s = b->init(level);
    if (s.ok()) return b;
    // EINVAL: the kernel does not know these flags; try the next level. Anything else (EPERM from
    // seccomp or the sysctl, ENOSYS, ENOMEM) fails the same way at every level.
    if (status_errno(s) != EINVAL || level == last) return s;
  }
  return absl::InternalError("io_uring: no set-up level tried");  // unreachable
}

UringBackend::UringBackend(Options options, SetupMode mode)
    : options_(options), setup_mode_(mode) {}

absl::Status UringBackend::init(int level) {
  UringSetup setup;
  setup.sq_entries = options_.sq_entries;
  setup.cq_entries = options_.cq_entries;
  setup.sqpoll_cpu = options_.sqpoll_cpu;
  setup.sqpoll_idle_ms = options_.sqpoll_idle_ms;
  setup.no_sqarray = options_.no_sqarray;
  absl::Status s = init_uring(&ring_, level, setup, &no_sqarray_);
  if (!s.ok()) return s;
  ring_ready_ = true;
  sqpoll_ = level >= kUringFirstSqpollLevel;
  absl::StatusOr<UringFeatures> features = probe_uring(&ring_);
  if (!features.ok()) return features.status();
  multishot_accept_ = options_.multishot_accept && features->multishot_accept;
  has_cancel_fd_ = features->cancel_fd;
  // IORING_CQE_F_SOCK_NONEMPTY came with 5.19, as did IORING_OP_SOCKET (multishot_accept).
  sock_nonempty_ = options_.sock_nonempty_hint && features->multishot_accept;

  // Batched waits: min_wait_usec in the enter's argument (IORING_FEAT_MIN_TIMEOUT, 6.12).
  const bool min_wait_default = options_.min_wait_us == BackendParams::kDefaultUringMinWaitUs;
  if (options_.min_wait_us > 0) {
    if (sqpoll_) {
      if (!min_wait_default)
        notice(
            "io_uring: io_uring_min_wait_us is ignored with SQPOLL (the shard does not wait in "
            "the kernel for submissions)");
    } else if ((ring_.features & kFeatMinTimeout) == 0) {
      if (!min_wait_default)
        notice(
            "io_uring: io_uring_min_wait_us needs Linux 6.12 (IORING_FEAT_MIN_TIMEOUT); "
            "waiting without it");
    } else {
      min_wait_us_ = options_.min_wait_us;
    }
  }

  // Lets io_uring_enter skip the fd lookup (5.18); only an optimisation, so failure is ignored.
  ring_fd_registered_ = options_.register_ring_fd && io_uring_register_ring_fd(&ring_) == 1;

  // The fixed-file table, empty (a sparse registration, 5.19); sockets go in as they are used.
  // Only an optimisation: without it every SQE names its fd.
  if (options_.fixed_files && features->files_update && options_.fixed_file_slots > 0) {
    rlimit lim{};
    unsigned slots = options_.fixed_file_slots;
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < slots) {
      slots = static_cast<unsigned>(lim.rlim_cur);
    }
    if (slots > 0 && io_uring_register_files_sparse(&ring_, slots) == 0) {
      fixed_slots_ = slots;
      // Uninitialised: a page is touched only once an fd number in it is registered.
      slot_fds_.reset(new int[slots]);
    }
  }

  // A blocking eventfd: io_uring would complete a read on a non-blocking one with EAGAIN instead of
  // waiting for it. Only the ring reads it; wakeup() writes at most one pending token.
  eventfd_ = ::eventfd(0, EFD_CLOEXEC);
  if (eventfd_ < 0) return errno_status(errno, "eventfd");
  arm_wakeup();
  // A sender's failed message finds its target here (CQE_SKIP_SUCCESS, 5.17: only failures
  // post a CQE to the sender).
  msg_ring_ = options_.msg_ring && features->msg_ring && (ring_.features & IORING_FEAT_CQE_SKIP);
  {
    LiveRings& live = live_rings();
    std::lock_guard<std::mutex> lock(live.mu);
    live.rings.push_back(this);
  }
  live_ = true;

  // recv_lent needs a multishot receive (6.0) and cancelling by fd at close (5.19).
  const bool lend = options_.lent_recv && features->multishot_recv && has_cancel_fd_;
  if (options_.provided_buffers || lend) {
    // Optional: without it recv goes straight into the caller's span (see docs/backends.md) and
    // recv_lent is not offered. One ring serves both.
    absl::StatusOr<std::unique_ptr<UringBufferRing>> b =
        options_.provided_buffers
            ? UringBufferRing::create(&ring_, options_.buffer_count, options_.buffer_size)
            : UringBufferRing::create(&ring_, options_.lent_buffer_count,
                                      options_.lent_buffer_size);
    if (b.ok()) {
      buffers_ = *std::move(b);
      provided_recv_ = options_.provided_buffers;
      lend_ = lend;
    } else {
      notice(
          absl::StrCat("io_uring provided buffers unavailable, recv copies none and lends none: ",
                       b.status().message()));
    }
  }
  return absl::OkStatus();
}

UringBackend::~UringBackend() {
  loop_thread_.check();
  if (t_msg_sender == this) t_msg_sender = nullptr;
  if (live_) {
    LiveRings& live = live_rings();
    std::lock_guard<std::mutex> lock(live.mu);
    live.rings.erase(std::find(live.rings.begin(), live.rings.end(), this));
  }
  // Exiting the ring cancels whatever is still in flight (only fibers abandoned by a reactor
  // destroyed with fibers alive can have left some) and unregisters the buffer ring, which is
  // unmapped after it.
  if (ring_ready_) io_uring_queue_exit(&ring_);
  while (receivers_ != nullptr) destroy_receiver(receivers_);
  buffers_.reset();
  while (acceptors_ != nullptr) destroy_acceptor(acceptors_);
  if (eventfd_ >= 0) ::close(eventfd_);
}

std::string_view UringBackend::setup_mode_name(SetupMode mode) {
  switch (mode) {
    case SetupMode::kSingleIssuerDeferTaskrun:
      return "SINGLE_ISSUER|DEFER_TASKRUN";
    case SetupMode::kCoopTaskrun:
      return "COOP_TASKRUN";
    case SetupMode::kPlain:
      return "none";
    case SetupMode::kSqpollSingleIssuer:
      return "SQPOLL|SINGLE_ISSUER";
    case SetupMode::kSqpoll:
      return "SQPOLL";
  }
  return "?";
}

std::string UringBackend::describe() const {
  const std::string_view mode = setup_mode_name(setup_mode_);
  std::string sqpoll;
  if (sqpoll_) {
    sqpoll = absl::StrCat(", SQ thread ",
                          options_.sqpoll_cpu >= 0 ? absl::StrCat("on CPU ", options_.sqpoll_cpu)
                                                   : std::string("unpinned"),
                          " idle ", options_.sqpoll_idle_ms, " ms");
  }
  return absl::StrCat(
      "ring flags ", absl::string_view(mode.data(), mode.size()), sqpoll,
      multishot_accept_ ? ", multishot accept" : ", single-shot accept",
      no_sqarray_ ? ", no SQ array" : "", ring_fd_registered_ ? ", registered ring fd" : "",
      fixed_slots_ > 0 ? absl::StrCat(", fixed files (", fixed_slots_, " slots)") : "",
      provided_buffers() ? ", recv via provided buffers" : ", recv into caller's buffer",
      lend_ ? absl::StrCat(", recv_lent via multishot receive (", buffers_->buffer_count(), " x ",
                           buffers_->buffer_size(), " B buffers)")
            : "",
      options_.async_send ? ", async send" : "",
      options_.send_first ? (options_.async_send ? ", send-first for large sends" : ", send-first")
                          : "",
      options_.poll_first ? (sock_nonempty_ ? ", poll-first from SOCK_NONEMPTY" : ", poll-first")
                          : "",
      min_wait_us_ > 0
          ? absl::StrCat(", batched waits (as many completions as the last poll, up to ",
                         kMinWaitEvents, ", or ", min_wait_us_, " us)")
          : "",
      msg_ring_ ? ", wakeups from io_uring loops via MSG_RING" : "");
}

UringBackend::FdState& UringBackend::fd_state(int fd) {
  if (static_cast<size_t>(fd) >= fds_.size()) fds_.resize(static_cast<size_t>(fd) * 2 + 64);
  return fds_[static_cast<size_t>(fd)];
}

// ---- completion (submission and poll: uring_poll.cc) ----

void UringBackend::handle_cqe(uint64_t user_data, int32_t res, uint32_t flags) {
  if (user_data == kIgnoreData) return;
  if (user_data == kWakeupData) {
    wakeup_pending_.store(false);
    arm_wakeup();
    return;
  }
  if (user_data == kWakeupMsgData) {  // another loop's wakeup message; the eventfd stays armed
    wakeup_pending_.store(false);
    return;
  }
  if ((user_data & kTagMask) == kTagWakeupMsg) {
    wakeup_message_failed(reinterpret_cast<UringBackend*>(user_data & ~kTagMask), res);
    return;
  }
  if ((user_data & kTagMask) == kTagAcceptor) {
    handle_accept_cqe(reinterpret_cast<Acceptor*>(user_data & ~kTagMask), res, flags);
    return;
  }
  if ((user_data & kTagMask) == kTagSend) {
    handle_send_cqe(reinterpret_cast<SendQueue*>(user_data & ~kTagMask), res);
    return;
  }
  if ((user_data & kTagMask) == kTagFiles) {
    handle_files_cqe(user_data, res);
    return;
  }
  if ((user_data & kTagMask) == kTagRecv) {
    handle_recv_cqe(reinterpret_cast<Receiver*>(user_data & ~kTagMask), res, flags);
    return;
  }
  Op* op = reinterpret_cast<Op*>(user_data);
  if ((flags & IORING_CQE_F_BUFFER) != 0 && buffers_ != nullptr) {
    const uint16_t bid = UringBufferRing::buffer_id(flags);
    if (res > 0 && op->copy_to != nullptr) {
      // The fiber is still parked on this op, so its span is alive: copy now and give the buffer
      // back at once rather than holding it until the fiber runs.
      const size_t n = std::min(static_cast<size_t>(res), op->copy_len);
      std::memcpy(op->copy_to, buffers_->buffer(bid), n);
      res = static_cast<int32_t>(n);
    }
    buffers_->recycle(bid);
  }
  op->res = res;
  op->cqe_flags = flags;
  op->done = true;
  if (op->linked) unlink_op(op);
  (void)detail::wake(op->fiber);  // false if it already woke for its deadline or a cancel
}

// ---- fixed files ----

void UringBackend::use_fixed_file(int fd) {
  if (fixed_slots_ == 0 || fd < 0 || static_cast<unsigned>(fd) >= fixed_slots_ || fixed_failed_) {
    return;
  }
  // Never grows fds_ (a caller may hold an FdState&): a socket this backend knows has its entry.
  if (static_cast<size_t>(fd) >= fds_.size()) return;
  FdState& st = fds_[static_cast<size_t>(fd)];
  // Only sockets this backend saw accepted, connected or sent on: their holders close them
  // through close(), which clears the slot (a file left in the table would stay open).
  if (st.fixed || st.socket != 1) return;
  slot_fds_[fd] = fd;
  io_uring_sqe* sqe = get_sqe();
  // In the same submission as the operation, ahead of it: the kernel issues SQEs in ring order,
  // and a FILES_UPDATE completes when it is issued.
  io_uring_prep_files_update(sqe, &slot_fds_[fd], 1, fd);
  io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(fd) << 4) | kTagFiles);
  st.fixed = true;
  fixed_file_registrations_.add();
}

void UringBackend::handle_files_cqe(uint64_t user_data, int32_t res) {
  if (res >= 0) return;
  // Not expected (the fd was open when the update was prepared, its slot inside the table): the
  // operations prepared with the slot fail with EBADF and their callers see the error. No more
  // sockets go into the table; this one's later operations name the fd again.
  fixed_file_errors_.add();
  const auto slot = static_cast<size_t>(user_data >> 4);
  const bool clear = (user_data & kFilesClear) != 0;
  if (!clear && slot < fds_.size()) fds_[slot].fixed = false;
  if (!fixed_failed_) {
    fixed_failed_ = true;
    notice(absl::StrCat("io_uring: ", clear ? "clearing" : "filling", " fixed-file slot ", slot,
                        " failed (", std::strerror(-res), "); fixed files off from now on"));
  }
}

void UringBackend::arm_wakeup() {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, eventfd_, &eventfd_value_, sizeof eventfd_value_, 0);
  io_uring_sqe_set_data64(sqe, kWakeupData);
}

void UringBackend::wakeup() {
  wake(/*defer=*/false);
}

void UringBackend::wakeup_deferred() {
  wake(/*defer=*/true);
}

void UringBackend::wake(bool defer) {
  if (wakeup_pending_.exchange(true)) return;
  wakeups_.fetch_add(1, std::memory_order_relaxed);
  // From another io_uring loop: a message through that loop's ring. wakeup_pending_ keeps every
  // other waker from writing until this ring has taken it.
  if (UringBackend* const sender = t_msg_sender; sender != nullptr && sender != this) {
    sender->send_wakeup_message(this, defer);
    return;
  }
  eventfd_wakeup();
}

void UringBackend::eventfd_wakeup() {
  const uint64_t one = 1;
  ssize_t w = ::write(eventfd_, &one, sizeof one);
  (void)w;  // cannot block: the ring reads the counter back to zero after each token
}

void UringBackend::send_wakeup_message(UringBackend* target, bool defer) {
  io_uring_sqe* sqe = get_sqe();
  // The target's ring fd is fixed at its creation; the target outlives this call (the poster
  // holds it), and a target destroyed before the kernel issues the message fails it (EBADFD).
  io_uring_prep_msg_ring(sqe, target->ring_.ring_fd, 0, kWakeupMsgData, 0);
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uint64_t>(target) | kTagWakeupMsg);
  wakeup_messages_.add();
  if (defer) return;  // poll() submits every SQE prepared, end_run() what is left
  // With the SQEs the loop prepared so far: they would have gone with its next poll. Under SQPOLL
  // the SQ thread takes it, woken only if it sleeps.
  if (sqpoll_) {
    sqpoll_submit();
  } else {
    (void)enter_submit();
  }
}

void UringBackend::end_run() {
  loop_thread_.check();
  if (io_uring_sq_ready(&ring_) > 0) (void)enter_submit();
}

void UringBackend::wakeup_message_failed(UringBackend* target, int32_t res) {
  wakeup_message_errors_.add();
  bool woken = false;
  {
    LiveRings& live = live_rings();
    std::lock_guard<std::mutex> lock(live.mu);
    if (std::find(live.rings.begin(), live.rings.end(), target) != live.rings.end()) {
      target->eventfd_wakeup();  // its wakeup_pending_ is still set: nobody else writes it
      woken = true;
    }
  }
  if (woken && !msg_failed_) {
    msg_failed_ = true;
    notice(absl::StrCat("io_uring: a wakeup message to another ring failed (", std::strerror(-res),
                        "); woke it through its eventfd"));
  }
}

void UringBackend::counters(std::vector<Counter>& out) const {
  out.push_back({"sqes_submitted_total", sqes_submitted_.get()});
  out.push_back({"cqes_reaped_total", cqes_reaped_.get()});
  out.push_back({"io_uring_enter_calls_total", enter_calls_.get()});
  out.push_back({"io_uring_cancels_total", cancels_.get()});
  out.push_back({"io_uring_accept_multishot_cqes_total", accept_multishot_cqes_.get()});
  out.push_back({"io_uring_accepts_swept_total", swept_accepts_.get()});
  out.push_back({"io_uring_direct_sends_total", direct_sends_.get()});
  out.push_back({"io_uring_queued_sends_total", queued_sends_.get()});
  out.push_back({"io_uring_poll_first_recvs_total", poll_first_recvs_.get()});
  out.push_back({"io_uring_send_sqes_total", send_sqes_.get()});
  out.push_back({"io_uring_send_queue_waits_total", send_queue_waits_.get()});
  out.push_back({"io_uring_provided_buffer_recvs_total", provided_buffer_recvs_.get()});
  out.push_back({"io_uring_provided_buffer_enobufs_total", provided_buffer_enobufs_.get()});
  out.push_back({"io_uring_sqpoll_wakeups_total", sqpoll_wakeups_.get()});
  out.push_back({"io_uring_fixed_file_registrations_total", fixed_file_registrations_.get()});
  out.push_back({"io_uring_fixed_file_errors_total", fixed_file_errors_.get()});
  out.push_back({"io_uring_lent_recv_arms_total", lent_recv_arms_.get()});
  out.push_back({"io_uring_lent_sends_total", lent_sends_.get()});
  out.push_back({"io_uring_lent_recv_cqes_total", lent_recv_cqes_.get()});
  out.push_back({"io_uring_lent_recv_pauses_total", lent_recv_pauses_.get()});
  out.push_back({"io_uring_lent_recv_fallbacks_total", lent_recv_fallbacks_.get()});
  out.push_back({"io_uring_batched_waits_total", batched_waits_.get()});
  out.push_back({"io_uring_batched_waits_short_total", batched_waits_short_.get()});
  out.push_back({"wakeups_total", wakeups_.load(std::memory_order_relaxed)});
  out.push_back({"io_uring_wakeup_messages_total", wakeup_messages_.get()});
  out.push_back({"io_uring_wakeup_message_errors_total", wakeup_message_errors_.get()});
  // Gauge: 0 SINGLE_ISSUER|DEFER_TASKRUN, 1 COOP_TASKRUN, 2 no flags, 3 SQPOLL|SINGLE_ISSUER,
  // 4 SQPOLL.
  out.push_back({"io_uring_setup_level", static_cast<uint64_t>(setup_mode_)});
  // Gauges, 1 when this ring got the feature (describe() lists them by name).
  out.push_back({"io_uring_feature_async_send", options_.async_send ? 1u : 0u});
  out.push_back({"io_uring_feature_send_first", options_.send_first ? 1u : 0u});
  out.push_back({"io_uring_feature_poll_first", options_.poll_first ? 1u : 0u});
  out.push_back({"io_uring_feature_sock_nonempty_hint", sock_nonempty_ ? 1u : 0u});
  out.push_back({"io_uring_feature_multishot_accept", multishot_accept_ ? 1u : 0u});
  out.push_back({"io_uring_feature_provided_buffers", provided_buffers() ? 1u : 0u});
  out.push_back({"io_uring_feature_sqpoll", sqpoll_ ? 1u : 0u});
  out.push_back({"io_uring_feature_registered_ring_fd", ring_fd_registered_ ? 1u : 0u});
  out.push_back({"io_uring_feature_no_sqarray", no_sqarray_ ? 1u : 0u});
  out.push_back({"io_uring_feature_fixed_files", fixed_slots_ > 0 ? 1u : 0u});
  out.push_back({"io_uring_feature_msg_ring", msg_ring_ ? 1u : 0u});
  out.push_back({"io_uring_feature_lent_recv", lend_ ? 1u : 0u});
  out.push_back({"io_uring_feature_min_wait", min_wait_us_ > 0 ? 1u : 0u});
}

// ---- operation records ----

UringBackend::Op* UringBackend::new_op(int fd) {
  if (free_ops_ == nullptr) {
    constexpr size_t kBlock = 256;
    op_blocks_.push_back(std::make_unique<Op[]>(kBlock));
    Op* block = op_blocks_.back().get();
    for (size_t i = 0; i < kBlock; ++i) {
      block[i].next = free_ops_;
      free_ops_ = &block[i];
    }
  }
  Op* op = free_ops_;
  free_ops_ = op->next;
  *op = Op{};
  op->fiber = detail::current_fiber();
  op->fd = fd;
  return op;
}

void UringBackend::free_op(Op* op) {
  op->fiber = nullptr;
  op->next = free_ops_;
  free_ops_ = op;
}

void UringBackend::link_op(Op* op) {
  FdState& st = fd_state(op->fd);
  op->prev = nullptr;
  op->next = st.ops;
  if (st.ops != nullptr) st.ops->prev = op;
  st.ops = op;
  op->linked = true;
}

void UringBackend::unlink_op(Op* op) {
  FdState& st = fds_[static_cast<size_t>(op->fd)];
  (op->prev ? op->prev->next : st.ops) = op->next;
  if (op->next != nullptr) op->next->prev = op->prev;
  op->prev = op->next = nullptr;
  op->linked = false;
}

template <class Prep>
absl::StatusOr<int32_t> UringBackend::run_op(int fd, Deadline deadline, const char* what, Prep prep,
                                             bool returns_fd, uint32_t* cqe_flags,
                                             bool releasable) {
  loop_thread_.check();
  Op* op = new_op(fd);
  use_fixed_file(fd);
  io_uring_sqe* sqe = get_sqe();
  prep(sqe, op);
  mark_fixed(sqe, fd);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uintptr_t>(op));
  link_op(op);
  const absl::Status parked = detail::park(deadline, what, /*cancellable=*/true, releasable);
  if (!op->done) {
    // Deadline or cancel: the kernel still owns the buffer. Cancel, and wait for the CQE that
    // says the kernel let go of it, whichever way the race went.
    cancels_.add();
    io_uring_sqe* cancel = get_sqe();
    io_uring_prep_cancel64(cancel, reinterpret_cast<uintptr_t>(op), 0);
    io_uring_sqe_set_data64(cancel, kIgnoreData);
    while (!op->done) (void)detail::park(kNoDeadline, what, /*cancellable=*/false);
  }
  const int32_t res = op->res;
  if (cqe_flags != nullptr) *cqe_flags = op->cqe_flags;
  const bool closed = op->closed;
  free_op(op);
  if (closed) {
    if (res >= 0 && returns_fd) ::close(res);  // never leak a connection accepted meanwhile
    return absl::FailedPreconditionError(closed_message(what, fd));
  }
  if (res == -ECANCELED && !parked.ok()) return parked;
  if (res < 0) return errno_status(-res, what, fd);
  return res;
}

// ---- I/O ----

absl::StatusOr<int> UringBackend::accept(int fd, sockaddr_storage* peer, Deadline deadline) {
  loop_thread_.check();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("accept on invalid fd ", fd));
  if (!multishot_accept_) return accept_single(fd, peer, deadline);
  // The I/O budget, as on the readiness backends: the multishot accept takes connections ahead of
  // the fiber, and an accept loop handed one after another without suspending would otherwise
  // start every connection of a storm before the first of them is served.
  detail::yield_if_io_budget_spent();
  for (;;) {
    Acceptor* a = acceptor(fd);
    if (!a->ready.empty()) {
      const int conn = a->ready.front();
      a->ready.pop_front();
      fill_peer(conn, peer);
      fd_state(conn).socket = 1;
      detail::count_io();
      return conn;
    }
    if (a->error != 0) return errno_status(std::exchange(a->error, 0), "accept", fd);
    // Stopped, with its final CQE in: the kernel takes no more for us; what its queue still holds
    // from before is swept.
    if (a->stopped && !a->armed) return sweep_stopped(a, peer);
    if (!a->armed) arm_acceptor(a);
    AcceptWaiter w;
    w.fiber = detail::current_fiber();
    a->push(&w);
    const absl::Status s = detail::park(deadline, "accept");
    // `a` may be gone (close() unlinks every waiter first): touch it only while still linked.
    if (w.linked) a->remove(&w);
    if (w.fd >= 0) {
      fill_peer(w.fd, peer);
      fd_state(w.fd).socket = 1;
      return w.fd;
    }
    if (!s.ok()) return s;
  }
}

absl::StatusOr<int> UringBackend::accept_single(int fd, sockaddr_storage* peer, Deadline deadline) {
  for (;;) {
    // Stopped: the accept in flight is cancelled or done (this fiber waited for its CQE).
    if (Acceptor* a = fd_state(fd).acceptor; a != nullptr && a->stopped) {
      return sweep_stopped(a, peer);
    }
    sockaddr_storage storage{};
    socklen_t len = sizeof storage;
    absl::StatusOr<int32_t> r = run_op(
        fd, deadline, "accept",
        [&](io_uring_sqe* sqe, Op*) {
          io_uring_prep_accept(sqe, fd, reinterpret_cast<sockaddr*>(&storage), &len, kAcceptFlags);
        },
        /*returns_fd=*/true);
    // ECANCELED with the fiber's park OK: stop_accepting() cancelled it (the loop's top says so).
    if (!r.ok() &&
        (status_errno(r.status()) == ECONNABORTED || status_errno(r.status()) == ECANCELED)) {
      continue;
    }
    if (!r.ok()) return r.status();
    if (peer != nullptr) *peer = storage;
    fd_state(*r).socket = 1;
    return *r;
  }
}

UringBackend::Acceptor* UringBackend::acceptor(int fd) {
  FdState& st = fd_state(fd);
  if (st.acceptor == nullptr) {
    auto* a = new Acceptor;
    a->fd = fd;
    a->next = acceptors_;
    if (acceptors_ != nullptr) acceptors_->prev = a;
    acceptors_ = a;
    st.acceptor = a;
  }
  return st.acceptor;
}

// io_uring's accept waits for a listener with an exclusive wakeup (as EPOLLEXCLUSIVE): the kernel
// wakes only the first exclusive waiter for each connection. A connection that arrives just before
// stop_accepting's cancel wakes this ring's accept, which the cancel then ends without taking it,
// and the socket's other holder (an upgrade's new process, waiting behind us) is never woken: the
// connection would sit in the queue until the next one arrived. So once this ring no longer waits
// (a later connection wakes the other holder), accept() takes what the queue still holds with
// nonblocking accept4 until it is empty once. A blocking listener is not swept (accept4 would
// block the loop); the daemon's listeners are nonblocking, as the readiness backends need.
absl::StatusOr<int> UringBackend::sweep_stopped(Acceptor* a, sockaddr_storage* peer) {
  if (a->sweep_left == kMaxSweptAccepts) {
    const int flags = ::fcntl(a->fd, F_GETFL);
    if (flags < 0 || (flags & O_NONBLOCK) == 0) a->sweep_left = 0;
  }
  while (a->sweep_left > 0) {
    socklen_t len = sizeof(sockaddr_storage);
    const int conn =
        ::accept4(a->fd, reinterpret_cast<sockaddr*>(peer), peer ? &len : nullptr, kAcceptFlags);
    if (conn >= 0) {
      --a->sweep_left;
      swept_accepts_.add();
      fd_state(conn).socket = 1;
      detail::count_io();
      return conn;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    break;  // EAGAIN: empty once, so nothing from before the stop is left; or a real error
  }
  a->sweep_left = 0;
  return stopped_status(a->fd);
}

void UringBackend::stop_accepting(int fd) {
  loop_thread_.check();
  if (fd < 0) return;
  Acceptor* a = acceptor(fd);  // single-shot too: it marks the fd stopped
  if (a->stopped) return;
  a->stopped = true;
  if (!multishot_accept_) {
    // The accepts in flight are the fd's ops (a listener has no others): cancel each; one the
    // kernel completed first still returns its connection.
    for (Op* op = fd_state(fd).ops; op != nullptr; op = op->next) {
      cancels_.add();
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel64(sqe, reinterpret_cast<uintptr_t>(op), 0);
      io_uring_sqe_set_data64(sqe, kIgnoreData);
    }
    return;
  }
  // Waiters exist only while the multishot is armed; its final CQE ends them (handle_accept_cqe).
  if (a->armed && !a->cancel_sent) {
    cancels_.add();
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, reinterpret_cast<uintptr_t>(a) | kTagAcceptor, 0);
    io_uring_sqe_set_data64(sqe, kIgnoreData);
    a->cancel_sent = true;
  }
}

void UringBackend::arm_acceptor(Acceptor* a) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, a->fd, nullptr, nullptr, kAcceptFlags);
  io_uring_sqe_set_data64(sqe, reinterpret_cast<uintptr_t>(a) | kTagAcceptor);
  a->armed = true;
  a->cancel_sent = false;
}

void UringBackend::handle_accept_cqe(Acceptor* a, int32_t res, uint32_t flags) {
  accept_multishot_cqes_.add();
  if ((flags & IORING_CQE_F_MORE) == 0) a->armed = false;
  if (a->detached) {
    if (res >= 0) ::close(res);
    if (!a->armed) destroy_acceptor(a);
    return;
  }
  if (res >= 0) {
    while (AcceptWaiter* w = a->pop()) {
      if (detail::wake(w->fiber)) {
        w->fd = std::exchange(res, -1);
        break;
      }
    }
    if (res >= 0) {
      a->ready.push_back(res);
      if (a->ready.size() >= kMaxReadyAccepts && a->armed && !a->cancel_sent) {
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel64(sqe, reinterpret_cast<uintptr_t>(a) | kTagAcceptor, 0);
        io_uring_sqe_set_data64(sqe, kIgnoreData);
        a->cancel_sent = true;
      }
    }
  } else if (res != -ECANCELED && res != -ECONNABORTED && res != -EINTR && res != -EAGAIN) {
    // A real error (EMFILE, EINVAL on a socket that does not listen, ...) ends the multishot: the
    // first waiter gets it, or the next accept() if nobody waits.
    const absl::Status err = errno_status(-res, "accept", a->fd);
    bool delivered = false;
    while (AcceptWaiter* w = a->pop()) {
      if (detail::wake(w->fiber, err)) {
        delivered = true;
        break;
      }
    }
    if (!delivered) a->error = -res;
  }
  if (a->armed || a->head == nullptr) return;
  if (!a->stopped) {
    arm_acceptor(a);
    return;
  }
  // The stopped multishot's final CQE: every connection it took went to a waiter or to `ready`
  // (and waiters exist only while `ready` is empty). The waiters go round accept() again, which
  // sweeps the queue (sweep_stopped) and then says the listener stopped.
  while (AcceptWaiter* w = a->pop()) (void)detail::wake(w->fiber);
}

void UringBackend::destroy_acceptor(Acceptor* a) {
  (a->prev ? a->prev->next : acceptors_) = a->next;
  if (a->next != nullptr) a->next->prev = a->prev;
  for (int conn : a->ready) ::close(conn);
  delete a;
}

absl::Status UringBackend::connect(int fd, const sockaddr* addr, socklen_t len, Deadline deadline) {
  if (fd >= 0) fd_state(fd).socket = 1;
  absl::StatusOr<int32_t> r = run_op(fd, deadline, "connect", [&](io_uring_sqe* sqe, Op*) {
    io_uring_prep_connect(sqe, fd, addr, len);
  });
  return r.status();
}

absl::StatusOr<size_t> UringBackend::recv(int fd, std::span<std::byte> buf, Deadline deadline) {
  if (receiver_of(fd) != nullptr) {  // recv_lent was used on fd: take from its queue, in order
    const iovec v{buf.data(), buf.size()};
    return recv_copy(fd, std::span(&v, 1), deadline);
  }
  if (provided_recv_ && !buf.empty()) {
    bool fall_back = false;
    absl::StatusOr<size_t> r = recv_provided(fd, buf, deadline, &fall_back);
    if (!fall_back) return r;
  }
  for (;;) {
    // After a receive that emptied the socket, tell the kernel to arm its poll at once rather
    // than try a receive that finds nothing first (IORING_RECVSEND_POLL_FIRST, 5.19; ignored
    // before).
    const bool poll_first = options_.poll_first && fd_state(fd).drained;
    if (poll_first) poll_first_recvs_.add();
    uint32_t flags = 0;
    absl::StatusOr<int32_t> r = run_op(
        fd, deadline, "recv",
        [&](io_uring_sqe* sqe, Op*) {
          io_uring_prep_recv(sqe, fd, buf.data(), buf.size(), 0);
          if (poll_first) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
        },
        /*returns_fd=*/false, &flags);
    if (!r.ok() && status_errno(r.status()) == EINTR) continue;
    if (!r.ok()) return r.status();
    // With the kernel's hint, a receive without it emptied the socket. Only TCP sets it, so on
    // other sockets every receive counts as emptying: POLL_FIRST then costs a poll armed while
    // data waits, never a lost wakeup. Without the hint, a short receive is the guess.
    const bool hint = sock_nonempty_ && (flags & IORING_CQE_F_SOCK_NONEMPTY) != 0;
    const bool short_read = static_cast<size_t>(*r) < buf.size();
    fd_state(fd).drained = *r > 0 && !hint && (sock_nonempty_ || short_read);
    return static_cast<size_t>(*r);
  }
}

absl::StatusOr<size_t> UringBackend::recv_provided(int fd, std::span<std::byte> buf,
                                                   Deadline deadline, bool* fall_back) {
  const size_t len = std::min<size_t>(buf.size(), buffers_->buffer_size());
  absl::StatusOr<int32_t> r = run_op(fd, deadline, "recv", [&](io_uring_sqe* sqe, Op* op) {
    io_uring_prep_recv(sqe, fd, nullptr, len, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UringBufferRing::kGroup;
    op->copy_to = buf.data();
    op->copy_len = len;
  });
  if (!r.ok()) {
    // Every buffer is lent out: receive into the caller's span this time.
    if (status_errno(r.status()) == ENOBUFS || status_errno(r.status()) == EINTR) {
      if (status_errno(r.status()) == ENOBUFS) provided_buffer_enobufs_.add();
      *fall_back = true;
      return size_t{0};
    }
    return r.status();
  }
  provided_buffer_recvs_.add();
  return static_cast<size_t>(*r);
}

absl::StatusOr<int32_t> UringBackend::recv_own_buffer(int fd, std::byte* buf, size_t len,
                                                      Deadline deadline) {
  return run_op(
      fd, deadline, "recv",
      [&](io_uring_sqe* sqe, Op*) { io_uring_prep_recv(sqe, fd, buf, len, 0); },
      /*returns_fd=*/false, /*cqe_flags=*/nullptr, /*releasable=*/true);
}

absl::StatusOr<size_t> UringBackend::readv(int fd, std::span<const iovec> iov, Deadline deadline) {
  if (receiver_of(fd) != nullptr) return recv_copy(fd, iov, deadline);
  return vectored(fd, iov, deadline, /*output=*/false, /*socket=*/true);
}

absl::StatusOr<size_t> UringBackend::vectored(int fd, std::span<const iovec> iov, Deadline deadline,
                                              bool output, bool socket) {
  const char* what = output ? "writev" : "readv";
  for (;;) {
    absl::StatusOr<int32_t> r = run_op(fd, deadline, what, [&](io_uring_sqe* sqe, Op* op) {
      op->output = output;
      const auto count = static_cast<unsigned>(iov.size());
      if (!socket) {
        if (output) {
          io_uring_prep_writev(sqe, fd, iov.data(), count, -1);
        } else {
          io_uring_prep_readv(sqe, fd, iov.data(), count, -1);
        }
        return;
      }
      op->msg.msg_iov = const_cast<iovec*>(iov.data());
      op->msg.msg_iovlen = iov.size();
      if (output) {
        io_uring_prep_sendmsg(sqe, fd, &op->msg, MSG_NOSIGNAL);
      } else {
        io_uring_prep_recvmsg(sqe, fd, &op->msg, 0);
      }
    });
    if (r.ok()) return static_cast<size_t>(*r);
    const int err = status_errno(r.status());
    if (err == ENOTSOCK && socket) {
      socket = false;
      continue;
    }
    if (err == EINTR) continue;
    if (err == EAGAIN) {
      // A non-blocking non-socket on a kernel that does not wait for it: wait, then retry.
      absl::Status s = wait(fd, output ? Interest::kWrite : Interest::kRead, deadline);
      if (!s.ok()) return s;
      continue;
    }
    return r.status();
  }
}

absl::Status UringBackend::wait(int fd, Interest interest, Deadline deadline) {
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("wait on invalid fd ", fd));
  const bool read = interest == Interest::kRead;
  if (read && receiver_of(fd) != nullptr) return wait_receiver(fd, deadline);
  const unsigned mask = read ? (POLLIN | POLLRDHUP) : POLLOUT;
  // A poll holds no memory of the fiber's: its stack may be released meanwhile.
  absl::StatusOr<int32_t> r = run_op(
      fd, deadline, read ? "wait for readable fd" : "wait for writable fd",
      [&](io_uring_sqe* sqe, Op*) { io_uring_prep_poll_add(sqe, fd, mask); },
      /*returns_fd=*/false, /*cqe_flags=*/nullptr, /*releasable=*/true);
  return r.status();
}

// ---- close ----

absl::Status UringBackend::close(int fd) {
  loop_thread_.check();
  if (fd < 0) return absl::InvalidArgumentError(absl::StrCat("close of invalid fd ", fd));
  bool in_flight = false;
  absl::Status close_status = absl::OkStatus();
  if (static_cast<size_t>(fd) < fds_.size()) {
    close_status = detach_send_queue(fd, &in_flight);  // may wait, inside a fiber
    FdState& st = fds_[static_cast<size_t>(fd)];
    st.drained = false;
    st.socket = 0;
    if (st.fixed) {
      // Empties the slot, so the file closes with ::close below (its last reference) once this SQE
      // is issued: with the cancel below if one is due, else at the loop's next submit. A later
      // registration of the same number comes after it in the ring.
      st.fixed = false;
      static const int kNoFile = -1;
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_files_update(sqe, const_cast<int*>(&kNoFile), 1, fd);
      io_uring_sqe_set_data64(sqe, (static_cast<uint64_t>(fd) << 4) | kFilesClear | kTagFiles);
    }
    // The fibers of these ops wake when their CQEs arrive (the cancel below makes them come) and
    // then report the close. Unlinked now so a new fd with this number starts clean.
    while (Op* op = st.ops) {
      unlink_op(op);
      op->closed = true;
      in_flight = true;
      if (!has_cancel_fd_) {
        // Before 5.19 there is no IORING_ASYNC_CANCEL_FD: cancel each op by its user_data.
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_cancel64(sqe, reinterpret_cast<uintptr_t>(op), 0);
        io_uring_sqe_set_data64(sqe, kIgnoreData);
      }
    }
    if (Acceptor* a = std::exchange(st.acceptor, nullptr)) {
      a->detached = true;
      const absl::Status err = absl::FailedPreconditionError(closed_message("accept", fd));
      while (AcceptWaiter* w = a->pop()) (void)detail::wake(w->fiber, err);
      for (int conn : a->ready) ::close(conn);
      a->ready.clear();
      if (a->armed) {
        in_flight = true;  // acceptors exist only with multishot accept, so with CANCEL_FD
      } else {
        destroy_acceptor(a);
      }
    }
    // Receivers exist only with lent_recv, so with CANCEL_FD.
    if (Receiver* r = std::exchange(st.receiver, nullptr); r != nullptr && detach_receiver(r)) {
      in_flight = true;
    }
  }
  if (in_flight) {
    cancels_.add();
    if (has_cancel_fd_) {
      io_uring_sqe* sqe = get_sqe();
      io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
      io_uring_sqe_set_data64(sqe, kIgnoreData);
    }
    // The kernel resolves the fd when the cancel is issued, so it must be submitted now, before
    // ::close releases the number (the loop's batched submit would come too late).
    if (enter_submit() < 0) {
      // Could not submit: wake the operations the old-fashioned way so none waits forever.
      ::shutdown(fd, SHUT_RDWR);
    }
  }
  if (::close(fd) != 0 && errno != EINTR) return errno_status(errno, "close", fd);
  return close_status;
}

absl::StatusOr<std::unique_ptr<Backend>> make_uring_backend(const BackendParams& params) {
  UringBackend::Options options;
  options.sqpoll = params.uring_sqpoll;
  options.sqpoll_cpu = params.uring_sqpoll_cpu;
  options.sqpoll_idle_ms = params.uring_sqpoll_idle_ms;
  options.min_wait_us = params.uring_min_wait_us;
  if (const char* v = std::getenv("REACTOR_URING_MIN_WAIT_US"); v != nullptr && *v != '\0') {
    options.min_wait_us = static_cast<unsigned>(std::strtoul(v, nullptr, 10));
  }
  // REACTOR_URING_SQPOLL=1 asks for SQPOLL (tests run suites under it), =0 never.
  if (const char* v = std::getenv("REACTOR_URING_SQPOLL"); v != nullptr && *v != '\0') {
    options.sqpoll = *v != '0';
  }
  // REACTOR_URING_POLL_FIRST=0 never asks for POLL_FIRST, for measurement.
  if (const char* v = std::getenv("REACTOR_URING_POLL_FIRST"); v != nullptr && *v == '0') {
    options.poll_first = false;
  }
  // REACTOR_URING_ASYNC_SEND=0 makes every send wait for its completion, for measurement and the
  // conformance suite without the feature.
  if (const char* v = std::getenv("REACTOR_URING_ASYNC_SEND"); v != nullptr && *v == '0') {
    options.async_send = false;
  }
  if (const char* v = std::getenv("REACTOR_URING_SOCK_NONEMPTY"); v != nullptr && *v == '0') {
    options.sock_nonempty_hint = false;
  }
  if (const char* v = std::getenv("REACTOR_URING_REGISTER_RING_FD"); v != nullptr && *v == '0') {
    options.register_ring_fd = false;
  }
  if (const char* v = std::getenv("REACTOR_URING_NO_SQARRAY"); v != nullptr && *v == '0') {
    options.no_sqarray = false;
  }
  if (const char* v = std::getenv("REACTOR_URING_FIXED_FILES"); v != nullptr && *v == '0') {
    options.fixed_files = false;
  }
  // REACTOR_URING_MSG_RING=0: every wakeup writes the eventfd (measurement, the suite without it).
  if (const char* v = std::getenv("REACTOR_URING_MSG_RING"); v != nullptr && *v == '0') {
    options.msg_ring = false;
  }
  if (const char* v = std::getenv("REACTOR_URING_LENT_RECV"); v != nullptr && *v != '\0') {
    options.lent_recv = *v != '0';  // 0 off, anything else on (it is off under TSan)
  }
  // REACTOR_URING_MULTISHOT_ACCEPT=0 accepts with one single-shot SQE per accept(), as on kernels
  // before 5.19 (the conformance suite runs so).
  if (const char* v = std::getenv("REACTOR_URING_MULTISHOT_ACCEPT"); v != nullptr && *v == '0') {
    options.multishot_accept = false;
  }
  // REACTOR_URING_SEND_FIRST=0 sends through the ring only, for measurement (docs/backends.md).
  if (const char* v = std::getenv("REACTOR_URING_SEND_FIRST"); v != nullptr && *v == '0') {
    options.send_first = false;
  }
  // REACTOR_URING_PROVIDED_BUFFERS=N turns on the provided-buffer recv path with N buffers ("1":
  // the default count), for measurement and tests; docs/backends.md says why it is off.
  if (const char* v = std::getenv("REACTOR_URING_PROVIDED_BUFFERS"); v != nullptr && *v != '\0') {
    const long n = std::strtol(v, nullptr, 10);
    if (n > 0) {
      options.provided_buffers = true;
      if (n > 1) options.buffer_count = static_cast<unsigned>(n);
    }
  }
  absl::StatusOr<std::unique_ptr<UringBackend>> b = UringBackend::create(options);
  if (!b.ok()) return b.status();
  return std::unique_ptr<Backend>(*std::move(b));
}

}  // namespace reactor
