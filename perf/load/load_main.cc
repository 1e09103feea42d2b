// reactord-load: a load generator for the comparison benchmarks (docs/benchmarks.md,
// "Comparisons"). Plain threads, each with its own epoll set and its share of the connections —
// deliberately not our runtime, so the tool does not measure itself.
//
// Closed loop (default): every connection sends a request, waits for the whole response, checks
// it, sends the next. Open loop (--rate R): requests leave at fixed intended times, R per second
// over all connections (round robin, pipelined when a connection is still busy), and latency
// runs from the intended send time, so a stall shows in the percentiles however long it lasts.
// The window counts, in the closed loop, the responses that complete inside it; in the open loop,
// the requests whose intended send time falls inside it and that complete before it ends — so a
// request due in the warm-up and answered late never inflates the window's rate past R.
// Run `reactord-load --help` for the options.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "perf/load/histogram.h"
#include "perf/load/protocol.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace reactor::load {
namespace {

constexpr char kUsage[] =
    "usage: reactord-load [options]\n"
    "  --mode echo|http|resp   protocol (default echo): echo checks every byte sent back,\n"
    "                          http sends GET --path and wants 200, resp sends PING, wants +PONG\n"
    "  --host ADDR             server IPv4 address (default 127.0.0.1)\n"
    "  --port N                server port (required)\n"
    "  --connections N         connections (default 1)\n"
    "  --threads N             worker threads, each with its own epoll (default 1)\n"
    "  --size BYTES            echo message size (default 64)\n"
    "  --path PATH             http request target (default /)\n"
    "  --duration SECONDS      measured window (default 5; may be fractional)\n"
    "  --warmup SECONDS        run before the window, not counted (default 1)\n"
    "  --rate R                open loop: R requests/s over all connections, latency from the\n"
    "                          intended send time (default 0: closed loop)\n"
    "  --requests N            closed loop, exactly N requests in all, no warm-up; --duration is\n"
    "                          then a time limit\n"
    "  --hold SECONDS          afterwards keep the connections open and idle this long\n"
    "                          (\"holding\" on stderr when it starts; for memory measurements)\n"
    "  --source-addrs N        bind connection i to 127.0.0.(1 + i mod N): more than one\n"
    "                          address's worth of ephemeral ports (default 0: no bind)\n"
    "  --server-pid PID        report the server's CPU per request and utilization over the\n"
    "                          window, from /proc/PID/stat (utime + stime)\n"
    "  --json                  one JSON object on stdout instead of text\n"
    "Exit: 0 ok, 1 errors or nothing completed (results are still printed), 64 bad usage.\n";

struct Options {
  ProtocolOptions protocol;
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 1;
  int threads = 1;
  double duration = 5;
  double warmup = 1;
  double rate = 0;
  uint64_t requests = 0;
  double hold = 0;
  int source_addrs = 0;
  int server_pid = 0;
  bool json = false;
};

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// utime + stime of a process in seconds, or -1.
double process_cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = s.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(s.substr(paren + 2));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 0; i < 13 && fields >> f; ++i) {  // field 3 (state) is i = 0; utime 14, stime 15
    if (i == 11) utime = std::strtoull(f.c_str(), nullptr, 10);
    if (i == 12) stime = std::strtoull(f.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec * 1e-6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// The run's timeline, fixed by the main thread before the workers start sending.
struct Timeline {
  int64_t start = 0;         // first send
  int64_t window_start = 0;  // end of warm-up
  int64_t window_end = 0;    // end of the measured window: nothing is sent from here on
};

struct Counters {
  LatencyHistogram latency;
  uint64_t completed = 0;       // responses counted in the window (see the header)
  uint64_t window_bytes = 0;    // verified bytes received inside the window
  uint64_t verified_bytes = 0;  // all verified bytes, warm-up included
  uint64_t sent = 0;            // requests sent, warm-up included
  uint64_t errors_connect = 0;
  uint64_t errors_verify = 0;
  uint64_t errors_closed = 0;  // the server closed a connection
  uint64_t errors_io = 0;
  int connected = 0;
  int64_t last_completion = 0;
  std::string first_error;

  void merge(const Counters& o) {
    latency.merge(o.latency);
    completed += o.completed;
    window_bytes += o.window_bytes;
    verified_bytes += o.verified_bytes;
    sent += o.sent;
    errors_connect += o.errors_connect;
    errors_verify += o.errors_verify;
    errors_closed += o.errors_closed;
    errors_io += o.errors_io;
    connected += o.connected;
    last_completion = std::max(last_completion, o.last_completion);
    if (first_error.empty()) first_error = o.first_error;
  }
  uint64_t errors() const { return errors_connect + errors_verify + errors_closed + errors_io; }
};

struct Conn {
  int fd = -1;
  std::unique_ptr<Protocol> protocol;
  std::string out;  // bytes not yet written
  size_t out_done = 0;
  bool want_out = false;
  std::deque<int64_t> pending;  // send time (intended, in open loop) of each outstanding request
  uint64_t quota = UINT64_MAX;  // --requests: requests this connection still sends
};

class Worker {
 public:
  Worker(const Options& o, int index, std::vector<int> ids) : o_(o), index_(index), ids_(ids) {}

  // Connects this worker's connections (blocking connects, then non-blocking sockets).
  void connect_all() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    sockaddr_in server{};
    server.sin_family = AF_INET;
    server.sin_port = htons(static_cast<uint16_t>(o_.port));
    inet_pton(AF_INET, o_.host.c_str(), &server.sin_addr);
    for (int id : ids_) {
      Conn c;
      c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (c.fd < 0) {
        fail(counters_.errors_connect, "socket", errno);
        continue;
      }
      int one = 1;
      setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (o_.source_addrs > 0) {
        setsockopt(c.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        sockaddr_in local{};
        local.sin_family = AF_INET;
        local.sin_addr.s_addr = htonl(0x7F000001u + static_cast<uint32_t>(id % o_.source_addrs));
        if (bind(c.fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
          fail(counters_.errors_connect, "bind", errno);
          close(c.fd);
          continue;
        }
      }
      if (connect(c.fd, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) {
        fail(counters_.errors_connect, "connect", errno);
        close(c.fd);
        continue;
      }
      fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
      c.protocol = Protocol::create(o_.protocol, static_cast<uint32_t>(id));
      if (o_.requests > 0) {
        c.quota = o_.requests / o_.connections +
                  (static_cast<uint64_t>(id) < o_.requests % o_.connections ? 1 : 0);
        quota_left_ += c.quota;
      }
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(conns_.size());
      epoll_ctl(epfd_, EPOLL_CTL_ADD, c.fd, &ev);
      conns_.push_back(std::move(c));
      ++counters_.connected;
    }
  }

  void run(const Timeline& t) {
    t_ = t;
    const bool open_loop = o_.rate > 0;
    if (open_loop) {
      timerfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = kTimerTag;
      epoll_ctl(epfd_, EPOLL_CTL_ADD, timerfd_, &ev);
      interval_ns_ = 1e9 * o_.threads / o_.rate;
      // Threads start their schedules staggered by a fraction of an interval.
      next_send_ = static_cast<double>(t_.start) + interval_ns_ * index_ / o_.threads;
      send_due(now_ns());
    } else {
      for (size_t i = 0; i < conns_.size(); ++i) send_request(i, t_.start);
    }
    std::vector<epoll_event> events(256);
    char buf[65536];
    while (live_ > 0 || open_loop) {
      const int64_t now = now_ns();
      if (now >= t_.window_end) break;
      if (o_.requests > 0 && outstanding_ == 0 && all_quotas_spent()) break;
      const int timeout_ms =
          static_cast<int>(std::min<int64_t>((t_.window_end - now) / 1000000 + 1, 100));
      const int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), timeout_ms);
      for (int e = 0; e < n; ++e) {
        const uint32_t tag = events[e].data.u32;
        if (tag == kTimerTag) {
          uint64_t expirations;
          (void)!read(timerfd_, &expirations, sizeof expirations);
          send_due(now_ns());
          continue;
        }
        Conn& c = conns_[tag];
        if (c.fd < 0) continue;
        if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(tag, buf, sizeof buf);
        if (c.fd >= 0 && (events[e].events & EPOLLOUT)) flush(tag);
      }
    }
  }

  // Closes every connection (after --hold).
  void close_all() {
    for (Conn& c : conns_) {
      if (c.fd >= 0) close(c.fd);
      c.fd = -1;
    }
    if (timerfd_ >= 0) close(timerfd_);
    if (epfd_ >= 0) close(epfd_);
  }

  Counters& counters() { return counters_; }

 private:
  static constexpr uint32_t kTimerTag = UINT32_MAX;

  void fail(uint64_t& counter, const char* what, int err) {
    ++counter;
    if (counters_.first_error.empty()) {
      counters_.first_error = std::string(what) + ": " + std::strerror(err);
    }
  }

  bool all_quotas_spent() const { return quota_left_ == 0; }

  void kill(size_t i) {
    Conn& c = conns_[i];
    outstanding_ -= c.pending.size();
    c.pending.clear();
    if (c.quota != UINT64_MAX) quota_left_ -= c.quota;
    c.quota = 0;
    close(c.fd);
    c.fd = -1;
    --live_;
  }

  void send_request(size_t i, int64_t intended) {
    Conn& c = conns_[i];
    if (c.fd < 0 || c.quota == 0) return;
    if (c.quota != UINT64_MAX) {
      --c.quota;
      --quota_left_;
    }
    c.protocol->append_request(c.out);
    c.pending.push_back(intended);
    ++outstanding_;
    ++counters_.sent;
    flush(i);
  }

  // Open loop: sends every request whose intended time has come, then arms the timer for the
  // next one.
  void send_due(int64_t now) {
    while (next_send_ <= static_cast<double>(now) && next_send_ < t_.window_end) {
      if (live_ == 0) return;
      while (conns_[rr_].fd < 0) rr_ = (rr_ + 1) % conns_.size();
      send_request(rr_, static_cast<int64_t>(next_send_));
      rr_ = (rr_ + 1) % conns_.size();
      next_send_ += interval_ns_;
    }
    if (next_send_ >= t_.window_end) return;
    itimerspec its{};
    const auto at = static_cast<int64_t>(next_send_);
    its.it_value.tv_sec = at / 1000000000;
    its.it_value.tv_nsec = at % 1000000000;
    timerfd_settime(timerfd_, TFD_TIMER_ABSTIME, &its, nullptr);
  }

  void flush(size_t i) {
    Conn& c = conns_[i];
    while (c.out_done < c.out.size()) {
      const ssize_t n =
          send(c.fd, c.out.data() + c.out_done, c.out.size() - c.out_done, MSG_NOSIGNAL);
      if (n > 0) {
        c.out_done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      fail(counters_.errors_io, "send", errno);
      kill(i);
      return;
    }
    if (c.out_done == c.out.size()) {
      c.out.clear();
      c.out_done = 0;
    }
    const bool want = c.out_done < c.out.size() || !c.out.empty();
    if (want != c.want_out) {
      epoll_event ev{};
      ev.events = EPOLLIN | (want ? EPOLLOUT : 0u);
      ev.data.u32 = static_cast<uint32_t>(i);
      epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
      c.want_out = want;
    }
  }

  void on_readable(size_t i, char* buf, size_t cap) {
    Conn& c = conns_[i];
    for (;;) {
      const ssize_t n = recv(c.fd, buf, cap, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0) {
        fail(counters_.errors_io, "recv", errno);
        kill(i);
        return;
      }
      if (n == 0) {
        ++counters_.errors_closed;
        if (counters_.first_error.empty()) {
          counters_.first_error = "the server closed a connection";
        }
        kill(i);
        return;
      }
      const uint64_t verified_before = c.protocol->verified_bytes();
      const int64_t done = c.protocol->consume(buf, static_cast<size_t>(n));
      const int64_t now = now_ns();
      const bool in_window = now >= t_.window_start && now < t_.window_end;
      const uint64_t verified = c.protocol->verified_bytes() - verified_before;
      counters_.verified_bytes += verified;
      if (in_window) counters_.window_bytes += verified;
      if (done < 0) {
        ++counters_.errors_verify;
        if (counters_.first_error.empty()) counters_.first_error = c.protocol->error();
        kill(i);
        return;
      }
      for (int64_t k = 0; k < done; ++k) {
        if (c.pending.empty()) {
          ++counters_.errors_verify;
          if (counters_.first_error.empty()) counters_.first_error = "a response nobody asked for";
          kill(i);
          return;
        }
        const int64_t sent = c.pending.front();
        c.pending.pop_front();
        --outstanding_;
        const bool counts = o_.rate > 0 ? in_window && sent >= t_.window_start : in_window;
        if (counts) {
          counters_.latency.record(now - sent);
          ++counters_.completed;
        }
        counters_.last_completion = now;
      }
      if (done > 0 && o_.rate <= 0 && now < t_.window_end) {
        for (int64_t k = 0; k < done; ++k) send_request(i, now);
      }
      if (c.fd < 0 || static_cast<size_t>(n) < cap) return;
    }
  }

  const Options& o_;
  const int index_;
  const std::vector<int> ids_;
  int epfd_ = -1;
  int timerfd_ = -1;
  std::vector<Conn> conns_;
  Counters counters_;
  Timeline t_;
  int live_ = 0;
  uint64_t outstanding_ = 0;
  uint64_t quota_left_ = 0;  // --requests: requests still to send, over all live connections
  double interval_ns_ = 0;
  double next_send_ = 0;
  size_t rr_ = 0;

 public:
  void set_live() { live_ = static_cast<int>(conns_.size()); }
};

bool parse_args(int argc, char** argv, Options* o) {
  auto number = [](const std::string& v, double* out) {
    char* end = nullptr;
    *out = std::strtod(v.c_str(), &end);
    return !v.empty() && *end == '\0' && std::isfinite(*out) && *out >= 0;
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (a == "--json") {
      o->json = true;
      continue;
    }
    std::string value;
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      std::fprintf(stderr, "reactord-load: %s needs a value\n", a.c_str());
      return false;
    }
    double d = 0;
    const bool numeric = number(value, &d);
    auto need_number = [&](bool integer) {
      if (!numeric || (integer && d != std::floor(d))) {
        std::fprintf(stderr, "reactord-load: %s: '%s' is not a %s\n", a.c_str(), value.c_str(),
                     integer ? "non-negative integer" : "non-negative number");
        return false;
      }
      return true;
    };
    if (a == "--mode") {
      if (!parse_mode(value, &o->protocol.mode)) {
        std::fprintf(stderr, "reactord-load: --mode: expected echo, http or resp\n");
        return false;
      }
    } else if (a == "--host") {
      in_addr addr{};
      if (inet_pton(AF_INET, value.c_str(), &addr) != 1) {
        std::fprintf(stderr, "reactord-load: --host: '%s' is not an IPv4 address\n", value.c_str());
        return false;
      }
      o->host = value;
    } else if (a == "--path") {
      o->protocol.path = value;
    } else if (a == "--port" || a == "--connections" || a == "--threads" || a == "--size" ||
               a == "--requests" || a == "--source-addrs" || a == "--server-pid") {
      if (!need_number(true)) return false;
      const auto v = static_cast<uint64_t>(d);
      if (a == "--port") o->port = static_cast<int>(v);
      if (a == "--connections") o->connections = static_cast<int>(v);
      if (a == "--threads") o->threads = static_cast<int>(v);
      if (a == "--size") o->protocol.size = static_cast<size_t>(v);
      if (a == "--requests") o->requests = v;
      if (a == "--source-addrs") o->source_addrs = static_cast<int>(std::min<uint64_t>(v, 254));
      if (a == "--server-pid") o->server_pid = static_cast<int>(v);
    } else if (a == "--duration" || a == "--warmup" || a == "--rate" || a == "--hold") {
      if (!need_number(false)) return false;
      if (a == "--duration") o->duration = d;
      if (a == "--warmup") o->warmup = d;
      if (a == "--rate") o->rate = d;
      if (a == "--hold") o->hold = d;
    } else {
      std::fprintf(stderr, "reactord-load: unknown option '%s'\n%s", a.c_str(), kUsage);
      return false;
    }
  }
  if (o->port <= 0 || o->port > 65535) {
    std::fprintf(stderr, "reactord-load: --port 1..65535 is required\n");
    return false;
  }
  if (o->connections < 1 || o->threads < 1 || o->protocol.size < 1 || o->duration <= 0) {
    std::fprintf(stderr,
                 "reactord-load: --connections, --threads, --size, --duration must be "
                 "at least 1 (duration above 0)\n");
    return false;
  }
  if (o->requests > 0 && o->rate > 0) {
    std::fprintf(stderr, "reactord-load: --requests is closed loop; it excludes --rate\n");
    return false;
  }
  o->threads = std::min(o->threads, o->connections);
  o->protocol.host = o->host;
  if (o->requests > 0) o->warmup = 0;
  return true;
}

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\u%04x", c);
      out += hex;
    } else {
      out += c;
    }
  }
  return out;
}

void sleep_until_ns(int64_t t) {
  timespec ts{};
  ts.tv_sec = t / 1000000000;
  ts.tv_nsec = t % 1000000000;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

int run(const Options& o) {
  raise_fd_limit();
  std::vector<std::unique_ptr<Worker>> workers;
  for (int w = 0; w < o.threads; ++w) {
    std::vector<int> ids;
    for (int id = w; id < o.connections; id += o.threads) ids.push_back(id);
    workers.push_back(std::make_unique<Worker>(o, w, std::move(ids)));
  }
  std::latch connected(o.threads);
  std::latch go(1);
  std::latch finished(o.threads);
  Timeline timeline;
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([&, worker = w.get()] {
      worker->connect_all();
      worker->set_live();
      connected.count_down();
      go.wait();
      worker->run(timeline);
      finished.count_down();
    });
  }
  connected.wait();
  const int64_t start = now_ns();
  timeline.start = start;
  timeline.window_start = start + static_cast<int64_t>(o.warmup * 1e9);
  timeline.window_end = timeline.window_start + static_cast<int64_t>(o.duration * 1e9);
  if (o.requests > 0) timeline.window_start = start;
  if (o.requests == 0) sleep_until_ns(start);
  double server_cpu0 = -1, client_cpu0 = 0;
  int64_t wall0 = 0;
  auto begin_window = [&] {
    wall0 = now_ns();
    client_cpu0 = self_cpu_seconds();
    if (o.server_pid > 0) server_cpu0 = process_cpu_seconds(o.server_pid);
  };
  if (o.requests > 0) begin_window();
  go.count_down();
  if (o.requests == 0) {
    sleep_until_ns(timeline.window_start);
    begin_window();
    sleep_until_ns(timeline.window_end);
  }
  finished.wait();
  int64_t wall1 = o.requests == 0 ? timeline.window_end : now_ns();
  const double client_cpu1 = self_cpu_seconds();
  const double server_cpu1 = o.server_pid > 0 ? process_cpu_seconds(o.server_pid) : -1;
  for (auto& t : threads) t.join();

  Counters total;
  for (auto& w : workers) total.merge(w->counters());
  if (o.requests > 0 && total.last_completion > 0) wall1 = total.last_completion;
  const double window = std::max(1e-9, (wall1 - wall0) * 1e-9);
  const double rps = total.completed / window;
  const double mbps = total.window_bytes / window / 1e6;
  const double client_cpu = client_cpu1 - client_cpu0;
  const bool have_server = o.server_pid > 0 && server_cpu0 >= 0 && server_cpu1 >= 0;
  const double server_cpu = have_server ? server_cpu1 - server_cpu0 : 0;
  const double per_req = total.completed > 0 ? 1e6 / total.completed : 0;
  const LatencyHistogram& h = total.latency;
  auto us = [](uint64_t ns) { return ns / 1000.0; };
  const char* loop = o.rate > 0 ? "open" : "closed";

  if (o.json) {
    std::printf(
        "{\"mode\":\"%s\",\"host\":\"%s\",\"port\":%d,\"connections\":%d,\"connected\":%d,"
        "\"threads\":%d,\"size\":%zu,\"loop\":\"%s\",\"rate\":%.1f,\"warmup_s\":%.3f,"
        "\"window_s\":%.3f,\"requests\":%" PRIu64 ",\"sent\":%" PRIu64
        ",\"throughput_rps\":%.1f,\"mbytes_per_s\":%.3f,"
        "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
        "\"mean\":%.1f},\"verified_bytes\":%" PRIu64 ",\"errors\":%" PRIu64
        ",\"errors_connect\":%" PRIu64 ",\"errors_verify\":%" PRIu64 ",\"errors_closed\":%" PRIu64
        ",\"errors_io\":%" PRIu64
        ",\"first_error\":\"%s\",\"client_cpu_s\":%.3f,"
        "\"client_cpu_per_request_us\":%.3f,\"client_utilization\":%.3f",
        mode_name(o.protocol.mode), o.host.c_str(), o.port, o.connections, total.connected,
        o.threads, o.protocol.size, loop, o.rate, o.warmup, window, total.completed, total.sent,
        rps, mbps, us(h.quantile(0.5)), us(h.quantile(0.9)), us(h.quantile(0.99)),
        us(h.quantile(0.999)), us(h.max()), h.mean() / 1000, total.verified_bytes, total.errors(),
        total.errors_connect, total.errors_verify, total.errors_closed, total.errors_io,
        json_escape(total.first_error).c_str(), client_cpu, client_cpu * per_req,
        client_cpu / window);
    if (have_server) {
      std::printf(
          ",\"server_pid\":%d,\"server_cpu_s\":%.3f,\"server_cpu_per_request_us\":%.3f,"
          "\"server_utilization\":%.3f",
          o.server_pid, server_cpu, server_cpu * per_req, server_cpu / window);
    }
    std::printf("}\n");
  } else {
    std::printf("reactord-load: %s %s:%d, %d/%d connections, %d thread(s), %s loop",
                mode_name(o.protocol.mode), o.host.c_str(), o.port, total.connected, o.connections,
                o.threads, loop);
    if (o.rate > 0) std::printf(" at %.0f req/s", o.rate);
    if (o.protocol.mode == Mode::kEcho) std::printf(", %zu B messages", o.protocol.size);
    std::printf(", %.2f s window after %.2f s warm-up\n", window, o.warmup);
    std::printf("requests    %" PRIu64 " in the window: %.0f req/s, %.2f MB/s received\n",
                total.completed, rps, mbps);
    std::printf("latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f\n",
                us(h.quantile(0.5)), us(h.quantile(0.9)), us(h.quantile(0.99)),
                us(h.quantile(0.999)), us(h.max()), h.mean() / 1000);
    std::printf("verified    %" PRIu64 " bytes; errors %" PRIu64 " (connect %" PRIu64
                ", verify %" PRIu64 ", closed %" PRIu64 ", io %" PRIu64 ")%s%s\n",
                total.verified_bytes, total.errors(), total.errors_connect, total.errors_verify,
                total.errors_closed, total.errors_io, total.first_error.empty() ? "" : ": ",
                total.first_error.c_str());
    if (have_server) {
      std::printf("server      pid %d: %.3f s CPU, %.2f us/request, utilization %.2f\n",
                  o.server_pid, server_cpu, server_cpu * per_req, server_cpu / window);
    }
    std::printf("client      %.3f s CPU, %.2f us/request, utilization %.2f\n", client_cpu,
                client_cpu * per_req, client_cpu / window);
  }
  std::fflush(stdout);
  if (o.hold > 0) {
    std::fprintf(stderr, "reactord-load: holding %d connections for %.1f s\n", total.connected,
                 o.hold);
    std::this_thread::sleep_for(std::chrono::duration<double>(o.hold));
  }
  for (auto& w : workers) w->close_all();
  return total.errors() == 0 && total.completed > 0 ? 0 : 1;
}

}  // namespace
}  // namespace reactor::load

int main(int argc, char** argv) {
  reactor::load::Options options;
  if (!reactor::load::parse_args(argc, argv, &options)) return 64;
  return reactor::load::run(options);
}
