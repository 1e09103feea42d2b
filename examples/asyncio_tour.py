#!/usr/bin/python3
"""The asyncio side of examples/asyncio_tour.cc, section by section (docs/asyncio.md).

  examples/asyncio_tour.py            every section
  examples/asyncio_tour.py gather     one section
"""
import asyncio
import logging
import sys
import time


# ---- run: asyncio.run(main()) ----
def section_run():
    async def main():
        await asyncio.sleep(0.01)
        return 42

    print("main returned", asyncio.run(main()))


# ---- fibers: every function on the way to an await is async ----
async def fetch(what):
    await asyncio.sleep(0.1)
    return what + " fetched"


def section_fibers():
    async def main():
        start = time.monotonic()

        def report(line):
            print(f"{(time.monotonic() - start) * 1000:4.0f} ms  {line}")

        # No built-in for_each/map takes a coroutine function: the loop is written by hand, async.
        async def crawl(pages):
            for p in pages:
                report(await fetch(p))

        await asyncio.gather(crawl(["a1", "a2"]), crawl(["b1", "b2"]))

    asyncio.run(main())


# ---- await: where a task may switch ----
def section_await():
    async def main():
        for suspend in (False, True):
            counter = 0

            async def bump():
                nonlocal counter
                seen = counter
                if suspend:
                    await asyncio.sleep(0)
                counter = seen + 1

            await asyncio.gather(*(bump() for _ in range(3)))
            how = "an await between read and write" if suspend else "no await"
            print(f"3 increments, {how}: counter = {counter}")

    asyncio.run(main())


# ---- gather: create_task, gather, exceptions ----
def section_gather():
    async def main():
        async def square(x):
            await asyncio.sleep(x * 0.01)
            return x * x

        tasks = [asyncio.create_task(square(x)) for x in (1, 2, 3)]
        print("squares:", *await asyncio.gather(*tasks))

        async def ok():
            await asyncio.sleep(0.01)

        async def bad():
            raise RuntimeError("bad input")

        t_ok = asyncio.create_task(ok())
        try:
            await asyncio.gather(t_ok, bad())
        except RuntimeError as e:
            print(f"gather raised: {e} (ok done: {'yes' if t_ok.done() else 'no'})")
        await t_ok

        finished = 0

        async def item():
            nonlocal finished
            await asyncio.sleep(0.01)
            finished += 1

        async with asyncio.TaskGroup() as tg:
            for _ in range(3):
                tg.create_task(item())
        print(f"TaskGroup: {finished} finished")

    asyncio.run(main())


# ---- timeouts: wait_for and cancel ----
def section_timeouts():
    async def main():
        q = asyncio.Queue(maxsize=1)
        try:
            await asyncio.wait_for(q.get(), 0.05)
        except TimeoutError:
            print("get with a 0.05 s timeout: TimeoutError")

        async def slow():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                print("slow: sleep raised CancelledError")
                raise

        t = asyncio.create_task(slow())
        try:
            await asyncio.wait_for(t, 0.05)  # cancels t on timeout
        except TimeoutError:
            print(f"wait_for with a 0.05 s timeout: TimeoutError, task cancelled: {t.cancelled()}")

    asyncio.run(main())


# ---- sync: Queue, Event, Lock, Semaphore ----
def section_sync():
    async def main():
        q = asyncio.Queue(maxsize=2)
        done = object()  # asyncio.Queue has no close(): a sentinel ends the stream

        async def producer():
            for i in range(1, 5):
                await q.put(i)
            await q.put(done)

        p = asyncio.create_task(producer())
        got = []
        while (v := await q.get()) is not done:
            got.append(v)
        print("Queue: got", *got)
        await p

        ready = asyncio.Event()

        async def waiter(i):
            await ready.wait()
            print(f"Event: waiter {i} woke")

        ws = [asyncio.create_task(waiter(i)) for i in range(2)]
        await asyncio.sleep(0.01)
        ready.set()
        await asyncio.gather(*ws)

        lock = asyncio.Lock()
        trace = []

        async def section(who):
            async with lock:
                trace.append(who)
                await asyncio.sleep(0.01)
                trace.append(who)

        await asyncio.gather(section("x"), section("y"))
        print("Lock:", "".join(trace))

        sem = asyncio.Semaphore(2)
        inside = most = 0

        async def user():
            nonlocal inside, most
            async with sem:
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(user() for _ in range(5)))
        print(f"Semaphore(2): at most {most} inside")

    asyncio.run(main())


# ---- to_thread ----
def section_offload():
    async def main():
        start = time.monotonic()

        def ms():
            return (time.monotonic() - start) * 1000

        async def ticker():
            for _ in range(3):
                await asyncio.sleep(0.1)
                print(f"{ms():4.0f} ms  tick")

        t = asyncio.create_task(ticker())

        def blocking():
            time.sleep(0.25)
            return 7

        r = await asyncio.to_thread(blocking)
        print(f"{ms():4.0f} ms  to_thread returned {r}")
        await t

    asyncio.run(main())


# ---- debug mode's slow-callback warning ----
def section_watchdog():
    logging.basicConfig(stream=sys.stdout, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    start = time.monotonic()

    async def hog():
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            pass
        print(f"{(time.monotonic() - start) * 1000:4.0f} ms  hog stopped spinning")

    async def main():
        asyncio.get_running_loop().slow_callback_duration = 0.05
        await asyncio.create_task(hog())

    asyncio.run(main(), debug=True)


SECTIONS = {
    "run": section_run,
    "fibers": section_fibers,
    "await": section_await,
    "gather": section_gather,
    "timeouts": section_timeouts,
    "sync": section_sync,
    "offload": section_offload,
    "watchdog": section_watchdog,
}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SECTIONS)
    for name in chosen:
        print("==", name, flush=True)
        SECTIONS[name]()
