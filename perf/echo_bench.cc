// Loopback echo per backend: N client connections ping-pong 64-byte messages with an echo server.
// Registered at start-up for every backend list_backends() reports available, so a backend that
// lands later joins without a change here.
//
// Two shapes, both at 1 and 100 connections:
//   echo_pinned/<backend>/conns:N   The server is a reactor on the backend under test, on its own
//       thread pinned to CPU 0; the client is a reactor on the benchmark thread pinned to CPU 1,
//       always on epoll (a fixed load generator, so only the server changes between backends).
//       Reported: messages/s (items_per_second, wall clock), process CPU per message (both
//       threads), the server thread's CPU per message and its utilisation. Utilisation well below
//       1 means the client or the wakeup path, not the server, set the rate.
//   echo_one_loop/<backend>/conns:N  Client and server fibers in one reactor on one thread (the
//       backend under test serves both sides). CPU-bound by construction: throughput is the
//       inverse of the runtime's whole cost per message, client side included.
//
// Each client fiber writes 64 bytes and reads the 64-byte echo, again and again. The benchmark
// runs in batches (KeepRunningBatch): the main fiber hands out a budget of messages, the client
// fibers draw from it and the one finishing the last message wakes the main fiber.
#include <benchmark/benchmark.h>
#include <pthread.h>
#include <time.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "backends/registry.h"
#include "perf/bench_util.h"
#include "reactor/net.h"
#include "reactor/reactor.h"
#include "reactor/sync.h"

namespace {

using reactor::Reactor;
using reactor::TcpListener;
using reactor::TcpStream;
using reactor::bench::clock_seconds;
using reactor::bench::set_per_op;

constexpr size_t kMessageSize = 64;
constexpr int kServerCpu = 0;
constexpr int kClientCpu = 1;
constexpr const char* kClientBackend = "epoll";

// Echoes everything read on `stream` until end of stream, an error or cancellation.
void echo_connection(TcpStream& stream) {
  std::array<std::byte, 4096> buf;
  for (;;) {
    absl::StatusOr<size_t> n = stream.read(buf);
    if (!n.ok() || *n == 0) return;
    if (!stream.write_all(std::span<const std::byte>(buf.data(), *n)).ok()) return;
  }
}

// Accepts connections on `listener` and echoes each on its own fiber, until cancelled.
void accept_loop(TcpListener& listener) {
  for (;;) {
    absl::StatusOr<TcpStream> s = listener.accept();
    if (!s.ok()) return;
    (void)reactor::spawn("echo", [stream = *std::move(s)]() mutable { echo_connection(stream); });
  }
}

absl::StatusOr<TcpListener> bind_loopback() {
  absl::StatusOr<reactor::SocketAddress> addr = reactor::SocketAddress::parse_ip("127.0.0.1:0");
  if (!addr.ok()) return addr.status();
  return TcpListener::bind(*addr);
}

// An echo server on its own thread and reactor, pinned to one CPU.
class EchoServerThread {
 public:
  // Starts the thread and waits until it listens; fails if its reactor or listener cannot be set
  // up. Any thread.
  static absl::StatusOr<std::unique_ptr<EchoServerThread>> start(std::string backend, int cpu) {
    std::unique_ptr<EchoServerThread> server(new EchoServerThread);
    std::promise<absl::Status> started;
    std::future<absl::Status> started_future = started.get_future();
    server->thread_ =
        std::thread([s = server.get(), backend = std::move(backend), cpu,
                     started = std::move(started)]() mutable { s->run(backend, cpu, started); });
    absl::Status status = started_future.get();
    if (!status.ok()) {
      server->thread_.join();
      return status;
    }
    return server;
  }

  // Stops the loop (its fibers are cancelled and joined) and joins the thread. Any thread.
  ~EchoServerThread() {
    if (Reactor* r = reactor_.load(); r != nullptr) r->stop();
    if (thread_.joinable()) thread_.join();
  }

  int port() const { return port_; }
  // The server thread's CPU time so far, in seconds. Any thread, while the server runs.
  double cpu_seconds() const { return clock_seconds(cpu_clock_); }

 private:
  EchoServerThread() = default;

  void run(const std::string& backend, int cpu, std::promise<absl::Status>& started) {
    reactor::bench::ScopedPin pin(cpu);
    Reactor::Options options;
    options.backend = backend;
    absl::StatusOr<std::unique_ptr<Reactor>> r = Reactor::create(options);
    if (!r.ok()) return started.set_value(r.status());
    {
      absl::StatusOr<TcpListener> listener = bind_loopback();
      if (!listener.ok()) return started.set_value(listener.status());
      absl::StatusOr<reactor::SocketAddress> local = listener->local_address();
      if (!local.ok()) return started.set_value(local.status());
      port_ = local->port();
      pthread_getcpuclockid(pthread_self(), &cpu_clock_);
      auto acceptor = (*r)->spawn("accept", [&] { accept_loop(*listener); });
      if (!acceptor.ok()) return started.set_value(acceptor.status());
      reactor_ = r->get();
      started.set_value(absl::OkStatus());
      (*r)->run_until_stopped();
      (*r)->cancel_all();
      (*r)->run_until([&] { return (*r)->fibers_alive() == 0; });
    }  // the listener closes through the backend while the reactor is still alive
  }

  std::thread thread_;
  std::atomic<Reactor*> reactor_{nullptr};
  int port_ = 0;
  clockid_t cpu_clock_ = CLOCK_THREAD_CPUTIME_ID;
};

// The client side, run as a fiber: connects `conns` streams to `port` and drives the benchmark's
// batches over them. `server` is null when the server shares this thread.
void drive_clients(benchmark::State& state, int port, int conns, const EchoServerThread* server) {
  absl::StatusOr<reactor::SocketAddress> addr =
      reactor::SocketAddress::parse_ip("127.0.0.1:" + std::to_string(port));
  if (!addr.ok()) return state.SkipWithError(addr.status().ToString().c_str());
  std::vector<TcpStream> streams;
  for (int i = 0; i < conns; ++i) {
    absl::StatusOr<TcpStream> s = TcpStream::connect(*addr);
    if (!s.ok()) return state.SkipWithError(s.status().ToString().c_str());
    streams.push_back(*std::move(s));
  }

  int64_t budget = 0;     // messages not yet started in this batch
  int64_t remaining = 0;  // messages not yet finished in this batch
  bool stop = false;
  bool failed = false;
  reactor::Event go;          // set while budget > 0
  reactor::Event batch_done;  // set by the fiber that finishes a batch's last message
  std::vector<reactor::Task<void>> clients;
  auto end_clients = [&] {
    stop = true;
    go.set();
    reactor::join_all(clients);
  };
  for (TcpStream& stream : streams) {
    auto task = reactor::spawn("client", [&, &stream = stream] {
      std::array<std::byte, kMessageSize> msg{}, echo{};
      for (;;) {
        while (budget == 0) {
          if (stop) return;
          if (!go.wait().ok()) return;
        }
        if (--budget == 0) go.clear();
        if (!stream.write_all(msg).ok() || !stream.read_exact(echo).ok()) {
          failed = true;
          stop = true;
          batch_done.set();
          return;
        }
        if (--remaining == 0) batch_done.set();
      }
    });
    if (!task.ok()) {
      end_clients();
      return state.SkipWithError(task.status().ToString().c_str());
    }
    clients.push_back(*std::move(task));
  }

  // Large enough that the tail of a batch (fewer than `conns` messages in flight) is ~1%.
  const int64_t batch = std::max<int64_t>(256, 100 * static_cast<int64_t>(conns));
  const double wall0 = clock_seconds(CLOCK_MONOTONIC);
  const double process0 = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
  const double server0 = server != nullptr ? server->cpu_seconds() : 0;
  while (!failed && state.KeepRunningBatch(batch)) {
    budget = remaining = batch;
    batch_done.clear();
    go.set();
    (void)batch_done.wait();
  }
  const double wall = clock_seconds(CLOCK_MONOTONIC) - wall0;
  const double process = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - process0;
  const double server_time = server != nullptr ? server->cpu_seconds() - server0 : 0;

  end_clients();
  if (failed) return state.SkipWithError("an echo connection failed");
  state.SetItemsProcessed(state.iterations());
  set_per_op(state, "proc_cpu/msg", process);
  if (server != nullptr) {
    set_per_op(state, "srv_cpu/msg", server_time);
    state.counters["srv_util"] = server_time / wall;
  }
}

void BM_echo_pinned(benchmark::State& state, const std::string& backend, int conns) {
  absl::StatusOr<std::unique_ptr<EchoServerThread>> server =
      EchoServerThread::start(backend, kServerCpu);
  if (!server.ok()) return state.SkipWithError(server.status().ToString().c_str());
  reactor::bench::ScopedPin pin(kClientCpu);
  Reactor::Options options;
  options.backend = kClientBackend;
  EchoServerThread& srv = **server;
  absl::Status s = Reactor::run([&] { drive_clients(state, srv.port(), conns, &srv); }, options);
  if (!s.ok()) state.SkipWithError(s.ToString().c_str());
}

void BM_echo_one_loop(benchmark::State& state, const std::string& backend, int conns) {
  reactor::bench::ScopedPin pin(kServerCpu);
  Reactor::Options options;
  options.backend = backend;
  absl::Status s = Reactor::run(
      [&] {
        absl::StatusOr<TcpListener> listener = bind_loopback();
        if (!listener.ok()) return state.SkipWithError(listener.status().ToString().c_str());
        absl::StatusOr<reactor::SocketAddress> local = listener->local_address();
        if (!local.ok()) return state.SkipWithError(local.status().ToString().c_str());
        auto acceptor = reactor::spawn("accept", [&] { accept_loop(*listener); });
        if (!acceptor.ok()) return state.SkipWithError(acceptor.status().ToString().c_str());
        drive_clients(state, local->port(), conns, nullptr);
        // The client streams are closed: the echo fibers have ended or are ending.
        acceptor->cancel();
        acceptor->join();
      },
      options);
  if (!s.ok()) state.SkipWithError(s.ToString().c_str());
}

// REACTOR_BENCH_ITERATIONS=N runs every benchmark for exactly N messages (rounded up to whole
// batches), once: for perf/callgrind-ops.sh and for counting system calls with strace -c.
void fixed_iterations(benchmark::internal::Benchmark* b) {
  if (const char* n = std::getenv("REACTOR_BENCH_ITERATIONS")) b->Iterations(std::atoll(n));
}

void register_benchmarks() {
  for (const reactor::BackendInfo& b : reactor::list_backends()) {
    if (!b.available) {
      std::fprintf(stderr, "echo_bench: backend %s unavailable, skipped: %s\n", b.name.c_str(),
                   b.reason.c_str());
      continue;
    }
    for (int conns : {1, 100}) {
      const std::string suffix = b.name + "/conns:" + std::to_string(conns);
      benchmark::RegisterBenchmark(
          ("echo_pinned/" + suffix).c_str(),
          [name = b.name, conns](benchmark::State& st) { BM_echo_pinned(st, name, conns); })
          ->UseRealTime()
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMicrosecond)
          ->Apply(fixed_iterations);
      benchmark::RegisterBenchmark(
          ("echo_one_loop/" + suffix).c_str(),
          [name = b.name, conns](benchmark::State& st) { BM_echo_one_loop(st, name, conns); })
          ->UseRealTime()
          ->MeasureProcessCPUTime()
          ->Unit(benchmark::kMicrosecond)
          ->Apply(fixed_iterations);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return reactor::bench::run_main(argc, argv, register_benchmarks);
}
