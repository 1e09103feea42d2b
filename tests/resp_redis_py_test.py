#!/usr/bin/python3
"""Drives every resp command through redis-py (Debian's python3-redis), one at a time and
pipelined, plus binary-safe values and values at and past max_bulk_bytes (the default, 1 MiB),
against a running reactord: resp_redis_py_test.py PORT SHARDS. Exits 0 when every
reply is what Redis would give, 1 (after printing each mismatch) otherwise. Run by
tests/resp_daemon_test.cc with /usr/bin/python3."""

import sys
import time

import redis

PORT, SHARDS = int(sys.argv[1]), int(sys.argv[2])
failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")


def raises(what, fn, exc=redis.ResponseError, text=None):
    try:
        fn()
    except exc as e:
        if text is not None and text not in str(e):
            failures.append(f"{what}: error {e!r} lacks {text!r}")
        return
    except Exception as e:  # noqa: BLE001 - any other error is a failure too
        failures.append(f"{what}: raised {e!r}, want {exc.__name__}")
        return
    failures.append(f"{what}: no error, want {exc.__name__}")


def owner(key):
    """services/resp.cc's resp_key_owner: 64-bit FNV-1a modulo the shards."""
    h = 14695981039346656037
    for b in key.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h % SHARDS


def owned_by(shard, prefix):
    i = 0
    while owner(f"{prefix}{i}") != shard:
        i += 1
    return f"{prefix}{i}"


def one_at_a_time(r):
    check("ping", r.ping(), True)
    check("echo", r.echo("hi"), b"hi")
    check("flushall", r.flushall(), True)
    check("set", r.set("k", "v"), True)
    check("get", r.get("k"), b"v")
    check("set nx", r.set("k", "w", nx=True), None)
    check("set xx", r.set("k", "w", xx=True), True)
    check("set get", r.set("k", "x", get=True), b"w")
    check("set ex", r.set("k", "v", ex=100), True)
    check("ttl", r.ttl("k"), 100)
    check("set px", r.set("k", "v", px=50000), True)
    check("pttl", 49000 < r.pttl("k") <= 50000, True)
    check("set keepttl", r.set("k", "v2", keepttl=True), True)
    check("ttl kept", r.ttl("k"), 50)
    check("set exat", r.set("k", "v", exat=int(time.time()) + 1000), True)
    check("ttl exat", r.ttl("k") in (999, 1000), True)
    check("set pxat", r.set("k", "v", pxat=int(time.time() * 1000) + 20000), True)
    check("ttl pxat", r.ttl("k") in (19, 20), True)
    raises("set bad ex", lambda: r.set("k", "v", ex=0), text="invalid expire time in 'set'")
    check("setnx", r.setnx("n1", "1"), True)
    check("setnx again", r.setnx("n1", "2"), False)
    check("setex", r.setex("se", 100, "x"), True)
    check("psetex", r.psetex("pse", 100000, "y"), True)
    check("ttl psetex", r.ttl("pse"), 100)
    check("getset", r.getset("se", "z"), b"x")
    check("getdel", r.getdel("se"), b"z")
    check("getdel gone", r.get("se"), None)
    check("getex", r.getex("pse", ex=300), b"y")
    check("ttl getex", r.ttl("pse"), 300)
    check("getex persist", r.getex("pse", persist=True), b"y")
    check("ttl persisted", r.ttl("pse"), -1)

    a0, b0, a1 = owned_by(0, "a"), owned_by(0, "b"), owned_by(SHARDS - 1, "a")
    check("mset", r.mset({a0: "1", b0: "2"}), True)
    check("mset other shard", r.mset({a1: "3"}), True)
    check("mget", r.mget(a0, a1, "missing", b0), [b"1", b"3", None, b"2"])
    if SHARDS > 1:
        raises("mset across shards", lambda: r.mset({a0: "x", a1: "y"}), text="CROSSSLOT")
    check("msetnx existing", r.msetnx({a0: "x", b0: "y"}), False)
    check("delete", r.delete(a0, b0), 2)
    check("msetnx", r.msetnx({a0: "x", b0: "y"}), True)

    check("incr", r.incr("ctr"), 1)
    check("incrby", r.incr("ctr", 10), 11)
    check("decr", r.decr("ctr"), 10)
    check("decrby", r.decr("ctr", 20), -10)
    check("incrbyfloat", r.incrbyfloat("fl", 2.5), 2.5)
    check("incrbyfloat again", r.incrbyfloat("fl", 0.25), 2.75)
    r.set("max", str(2**63 - 1))
    raises("incr overflow", lambda: r.incr("max"), text="increment or decrement would overflow")
    raises("incr non-integer", lambda: r.incr("k"), text="value is not an integer or out of range")
    check("append", r.append("s", "Hello"), 5)
    check("append more", r.append("s", " World"), 11)
    check("strlen", r.strlen("s"), 11)
    check("getrange", r.getrange("s", -5, -1), b"World")
    check("setrange", r.setrange("s", 6, "Redis"), 11)
    check("get setrange", r.get("s"), b"Hello Redis")
    check("type", r.type("s"), b"string")
    check("type none", r.type("nope"), b"none")

    k0, k1 = owned_by(0, "r"), owned_by(SHARDS - 1, "r")
    r.set(k0, "moved", ex=100)
    check("rename across shards", r.rename(k0, k1), True)
    check("renamed", r.get(k1), b"moved")
    check("renamed ttl", r.ttl(k1), 100)
    check("rename source gone", r.exists(k0), 0)
    k2 = owned_by(SHARDS - 1, "q")
    check("rename within shard", r.rename(k1, k2), True)
    raises("rename missing", lambda: r.rename("nope", "x"), text="no such key")

    check("expire", r.expire(k2, 10), True)
    check("ttl", r.ttl(k2), 10)
    check("expire nx", r.expire(k2, 20, nx=True), False)
    check("expire gt", r.expire(k2, 20, gt=True), True)
    check("pexpire", r.pexpire(k2, 30000), True)
    check("ttl pexpire", r.ttl(k2), 30)
    check("expireat", r.expireat(k2, int(time.time()) + 40), True)
    check("ttl expireat", r.ttl(k2) in (39, 40), True)
    check("pexpireat", r.pexpireat(k2, int(time.time() * 1000) + 50000), True)
    check("persist", r.persist(k2), True)
    check("ttl persisted", r.ttl(k2), -1)
    check("ttl missing", r.ttl("nope"), -2)
    check("pttl missing", r.pttl("nope"), -2)
    check("set px 100", r.set("short", "v", px=100), True)
    time.sleep(0.2)
    check("expired", r.get("short"), None)
    check("exists expired", r.exists("short"), 0)

    r.flushdb()
    names = [f"user:{i}" for i in range(50)] + [f"item:{i}" for i in range(50)]
    for n in names:
        r.set(n, "v")
    check("keys", sorted(r.keys("user:*")), sorted(n.encode() for n in names[:50]))
    check("keys ?", sorted(r.keys("user:?")), sorted(f"user:{i}".encode() for i in range(10)))
    check("keys []", sorted(r.keys("item:[12]")), [b"item:1", b"item:2"])
    check("scan_iter", sorted(set(r.scan_iter(match="item:*", count=7))),
          sorted(n.encode() for n in names[50:]))
    check("scan all", len(set(r.scan_iter(count=1000))), 100)
    cursor, keys = r.scan(0, match="*", count=5)
    check("scan step", cursor != 0 and len(keys) <= 100, True)
    check("dbsize", r.dbsize(), 100)
    check("flushdb", r.flushdb(), True)
    check("dbsize empty", r.dbsize(), 0)
    check("select 0", r.execute_command("SELECT", 0), True)
    raises("select 1", lambda: r.execute_command("SELECT", 1), text="DB index is out of range")

    hello = r.execute_command("HELLO", "2")
    check("hello proto", hello[hello.index(b"proto") + 1], 2)
    raises("hello 3", lambda: r.execute_command("HELLO", "3"), text="unsupported protocol version")
    check("client setname", r.client_setname("py-client"), True)
    check("client getname", r.client_getname(), "py-client")
    check("client id", isinstance(r.client_id(), int), True)
    check("client setinfo", r.execute_command("CLIENT", "SETINFO", "LIB-NAME", "redis-py"), b"OK")
    r.set("a", "1", ex=100)
    r.set("b", "2")
    info = r.info()
    check("info version", info.get("redis_version"), "7.0.0")
    check("info clients", info.get("connected_clients", 0) >= 1, True)
    check("info used_memory", info.get("used_memory", 0) > 0, True)
    check("info maxmemory", info.get("maxmemory"), 0)
    check("info stats", info.get("total_commands_processed", 0) > 10, True)
    check("info keyspace", info.get("db0"), {"keys": 2, "expires": 1, "avg_ttl": 0})
    check("info memory only", "redis_version" in r.info("memory"), False)
    check("command count", r.command_count() > 40, True)
    commands = r.command()
    check("command get", commands.get("get", {}).get("arity"), 2)
    check("command docs", r.execute_command("COMMAND", "DOCS"), {})  # an empty map
    raises("unknown command", lambda: r.execute_command("LPUSH", "l", "x"),
           text="unknown command 'LPUSH', with args beginning with: 'l' 'x'")
    raises("arity", lambda: r.execute_command("GET"),
           text="wrong number of arguments for 'get' command")


def pipelined(r):
    r.flushall()
    a0, b0 = owned_by(0, "pa"), owned_by(0, "pb")
    p = r.pipeline(transaction=False)
    p.set("pk", "v", ex=100).get("pk").setnx("pk", "x").getset("pk", "w").getdel("pk")
    p.set("pk", "v").getex("pk", px=10000).mset({a0: "1", b0: "2"}).mget(a0, b0)
    p.msetnx({a0: "3"}).incr("pc").incr("pc", 5).decr("pc").decr("pc", 2).incrbyfloat("pf", 1.5)
    p.append("ps", "ab").strlen("ps").getrange("ps", 0, 0).setrange("ps", 1, "c").type("ps")
    p.rename("ps", "ps2").expire("ps2", 100).pexpire("ps2", 200000).ttl("ps2").pttl("ps2")
    p.persist("ps2").expireat("ps2", int(time.time()) + 100).setex("px", 10, "v")
    p.psetex("py", 10000, "v").exists("pk", "ps2").delete("px", "py").keys("ps?").dbsize()
    p.scan(0, count=1000).echo("e").ping()
    got = p.execute(raise_on_error=False)
    want = [True, b"v", False, b"v", b"w", True, b"v", True, [b"1", b"2"], False, 1, 6, 5, 3,
            1.5, 2, 2, b"a", 2, b"string", True, True, True, 200, None, True, True, True, True,
            2, 2, [b"ps2"], 6, None, b"e", True]
    check("pipeline pttl", 199000 < got[24] <= 200000, True)
    got[24] = None
    check("pipeline scan", set(got[33][1]) <= {b"pk", a0.encode(), b0.encode(), b"pc", b"pf",
                                               b"ps2"}, True)
    got[33] = None
    check("pipeline", got, want)
    # A 2,000-command burst across both shards keeps its order.
    p = r.pipeline(transaction=False)
    for i in range(1000):
        p.set(f"burst:{i}", i)
        p.get(f"burst:{i}")
    replies = p.execute()
    check("burst", replies, [x for i in range(1000) for x in (True, str(i).encode())])


MAX_BULK_BYTES = 1048576  # config/config.h's default max_bulk_bytes


def bulk_limits():
    r = redis.Redis(host="127.0.0.1", port=PORT, socket_timeout=10)
    binary = bytes(range(256)) * 3 + b"\r\n$-1\r\n*0\r\n\x00"
    check("binary set", r.set(b"bin\x00\r\nkey", binary), True)
    check("binary get", r.get(b"bin\x00\r\nkey"), binary)
    check("binary keys", b"bin\x00\r\nkey" in r.keys(b"bin*"), True)
    at = bytes(i % 251 for i in range(MAX_BULK_BYTES))
    check("set at max_bulk_bytes", r.set("big", at), True)
    check("get at max_bulk_bytes", r.get("big"), at)
    check("strlen at max_bulk_bytes", r.strlen("big"), MAX_BULK_BYTES)
    # One byte past the limit: a protocol error from the length line on, then the server closes.
    # redis-py sees the error reply or, if the close comes first, a reset while it still sends.
    past = r.connection_pool.make_connection()
    try:
        past.send_command("SET", "toobig", at + b"x")
        reply = past.read_response()
        failures.append(f"set past max_bulk_bytes: replied {reply!r}")
    except redis.ResponseError as e:
        check("past max_bulk_bytes error", "Protocol error" in str(e), True)
    except redis.ConnectionError:
        pass
    finally:
        past.disconnect()
    r = redis.Redis(host="127.0.0.1", port=PORT, socket_timeout=10)
    check("past max_bulk_bytes not stored", r.exists("toobig"), 0)
    check("served after the error", r.get("big") == at, True)
    r.delete("big", b"bin\x00\r\nkey")


def main():
    r = redis.Redis(host="127.0.0.1", port=PORT, socket_timeout=10)
    # Several connections, so that both shards serve some of them.
    for _ in range(4):
        one_at_a_time(r)
        r = redis.Redis(host="127.0.0.1", port=PORT, socket_timeout=10)
    pipelined(r)
    bulk_limits()
    for f in failures:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
