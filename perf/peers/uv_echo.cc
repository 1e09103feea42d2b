// A single-threaded TCP echo server on libuv, written the way libuv's own benchmarks do it
// (uv_try_write first, a queued uv_write with a copy only for what did not go out), with the same
// 16 KiB read buffer as the other peers.
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "perf/peers/peer_args.h"

namespace {

char read_buf[reactor::peers::kReadSize];  // one loop thread: reads never overlap

struct WriteReq {
  uv_write_t req;
  char data[];  // the bytes uv_try_write left
};

void on_close(uv_handle_t* h) {
  std::free(h);
}

void on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf);

void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
  *buf = uv_buf_init(read_buf, sizeof read_buf);
}

void on_written(uv_write_t* req, int status) {
  uv_stream_t* stream = req->handle;
  std::free(req);
  if (status < 0) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(stream)))
      uv_close(reinterpret_cast<uv_handle_t*>(stream), on_close);
    return;
  }
  // The queue drained: read again.
  if (stream->write_queue_size == 0) uv_read_start(stream, on_alloc, on_read);
}

void on_read(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
  if (n < 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(stream), on_close);
    return;
  }
  if (n == 0) return;
  uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(n));
  const int w = uv_try_write(stream, &out, 1);
  if (w == n) return;
  if (w < 0 && w != UV_EAGAIN) {
    uv_close(reinterpret_cast<uv_handle_t*>(stream), on_close);
    return;
  }
  const size_t done = w < 0 ? 0 : static_cast<size_t>(w);
  const size_t left = static_cast<size_t>(n) - done;
  auto* req = static_cast<WriteReq*>(std::malloc(sizeof(WriteReq) + left));
  std::memcpy(req->data, buf->base + done, left);
  uv_buf_t rest = uv_buf_init(req->data, static_cast<unsigned>(left));
  uv_read_stop(stream);  // like the floor: no more reading until the remainder is out
  if (uv_write(&req->req, stream, &rest, 1, on_written) != 0) {
    std::free(req);
    uv_close(reinterpret_cast<uv_handle_t*>(stream), on_close);
  }
}

void on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* client = static_cast<uv_tcp_t*>(std::malloc(sizeof(uv_tcp_t)));
  uv_tcp_init(server->loop, client);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(client)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), on_close);
    return;
  }
  uv_tcp_nodelay(client, 1);
  uv_read_start(reinterpret_cast<uv_stream_t*>(client), on_alloc, on_read);
}

}  // namespace

int main(int argc, char** argv) {
  const reactor::peers::PeerArgs args = reactor::peers::parse_peer_args(argc, argv);
  uv_loop_t* loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  sockaddr_in addr{};
  uv_ip4_addr(args.host.c_str(), args.port, &addr);
  if (uv_tcp_bind(&server, reinterpret_cast<const sockaddr*>(&addr), 0) != 0 ||
      uv_listen(reinterpret_cast<uv_stream_t*>(&server), 4096, on_connection) != 0) {
    std::fprintf(stderr, "uv_echo: bind/listen failed\n");
    return 71;
  }
  int len = sizeof addr;
  uv_tcp_getsockname(&server, reinterpret_cast<sockaddr*>(&addr), &len);
  reactor::peers::announce(ntohs(addr.sin_port));
  return uv_run(loop, UV_RUN_DEFAULT);
}
