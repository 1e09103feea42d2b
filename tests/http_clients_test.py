#!/usr/bin/python3
"""Drives reactord's http service with Python's http.client (a client nobody here wrote):
keep-alive, HEAD, HTTP/1.0 with and without keep-alive, Expect: 100-continue, 405 and 404 on a
persistent connection. Usage: http_clients_test.py PORT. Prints each failure and "N failures";
exits 0 when there are none. Run by tests/http_clients_test.cc with /usr/bin/python3."""

import http.client
import os
import socket
import sys

PORT = int(sys.argv[1])
failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def connection(version=11):
    """A connected http.client connection and a duplicate of its socket, which outlives
    http.client's own close so that the test can see whether the server closed."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=10)
    if version == 10:
        c._http_vsn, c._http_vsn_str = 10, "HTTP/1.0"  # http.client's own switch for 1.0
    c.connect()
    c.raw = socket.socket(fileno=os.dup(c.sock.fileno()))
    return c


def closed_by_server(c):
    """True when the server closed the connection: the next read finds end of file."""
    c.raw.settimeout(5)
    try:
        return c.raw.recv(1) == b""
    except (socket.timeout, ConnectionResetError):
        return False
    finally:
        c.raw.close()


def keep_alive():
    c = connection()
    c.request("GET", "/")
    r = c.getresponse()
    check("get / status", r.status, 200)
    check("get / body", r.read().startswith(b"Hello from reactord, shard "), True)
    sock = c.sock
    for path, body in (("/healthz", b"ok"), ("/healthz", b"ok")):
        c.request("GET", path)
        r = c.getresponse()
        check(f"keep-alive {path}", (r.status, r.read(), r.will_close), (200, body, False))
    check("one socket for every request", c.sock is sock, True)
    c.request("GET", "/healthz", headers={"Connection": "close"})
    r = c.getresponse()
    check("connection: close", (r.status, r.getheader("Connection"), r.read()), (200, "close", b"ok"))
    check("closed after connection: close", closed_by_server(c), True)


def head():
    c = connection()
    c.request("HEAD", "/healthz")
    r = c.getresponse()
    check("head", (r.status, r.getheader("Content-Length"), r.read()), (200, "2", b""))
    # Had the server sent a body after HEAD's headers, this response would start with it.
    c.request("GET", "/healthz")
    r = c.getresponse()
    check("get after head", (r.status, r.read()), (200, b"ok"))
    c.request("HEAD", "/metrics")
    r = c.getresponse()
    check("head /metrics", (r.status, r.getheader("Content-Type"), r.read()),
          (200, "text/plain; version=0.0.4; charset=utf-8", b""))
    check("head /metrics length", int(r.getheader("Content-Length", "0")) > 100, True)


def http10():
    c = connection(10)
    c.request("GET", "/healthz")
    r = c.getresponse()
    check("1.0 get", (r.status, r.read(), r.will_close), (200, b"ok", True))
    check("1.0 closed", closed_by_server(c), True)
    c = connection(10)
    c.request("GET", "/healthz", headers={"Connection": "keep-alive"})
    r = c.getresponse()
    check("1.0 keep-alive", (r.status, r.getheader("Connection"), r.read()),
          (200, "keep-alive", b"ok"))
    sock = c.sock
    c.request("HEAD", "/healthz", headers={"Connection": "keep-alive"})
    r = c.getresponse()
    check("1.0 keep-alive head", (r.status, r.read(), c.sock is sock), (200, b"", True))
    c.request("GET", "/healthz")  # no keep-alive: the server closes after this one
    r = c.getresponse()
    check("1.0 last", (r.status, r.read()), (200, b"ok"))
    check("1.0 closed at last", closed_by_server(c), True)


def expect_continue():
    # http.client sends the body right after the headers, without waiting for a 100.
    c = connection()
    body = b"x" * 5000
    c.request("GET", "/healthz", body=body, headers={"Expect": "100-continue"})
    r = c.getresponse()
    check("expect get", (r.status, r.read()), (200, b"ok"))
    c.request("POST", "/healthz", body=body, headers={"Expect": "100-continue"})
    r = c.getresponse()
    check("expect post", (r.status, r.getheader("Allow"), r.will_close), (405, "GET, HEAD", False))
    r.read()
    c.request("GET", "/nothing-here")
    r = c.getresponse()
    check("404 after 405", (r.status, r.will_close), (404, False))
    r.read()
    c.request("GET", "/healthz")
    r = c.getresponse()
    check("after errors", (r.status, r.read()), (200, b"ok"))


for test in (keep_alive, head, http10, expect_continue):
    try:
        test()
    except Exception as e:  # noqa: BLE001 - an exception is a failure of that test
        failures.append(f"{test.__name__}: {e!r}")
for f in failures:
    print("FAIL", f)
print(f"{len(failures)} failures")
sys.exit(1 if failures else 0)
