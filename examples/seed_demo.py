#!/usr/bin/python3
"""The seed's two examples in asyncio, beside examples/seed_demo.cc (docs/asyncio.md).

1. Two workers sleeping 2 s and 1 s under gather finish in about 2 s, not 3 s.
2. A coroutine that never awaits holds up every other task until it stops.
"""
import asyncio
import time


async def worker(name, d, start):
    print(f"{time.monotonic() - start:5.2f} s  {name} starting")
    await asyncio.sleep(d)
    print(f"{time.monotonic() - start:5.2f} s  {name} done")


async def main():
    start = time.monotonic()
    print("-- cooperative: A sleeps 2 s, B sleeps 1 s, together")
    await asyncio.gather(worker("A", 2, start), worker("B", 1, start))
    print(f"{time.monotonic() - start:5.2f} s  both done (the sum would be 3 s)\n")

    print("-- a coroutine that never awaits stalls the others")
    start = time.monotonic()

    async def ticker():
        await asyncio.sleep(0.01)
        print(f"{time.monotonic() - start:5.2f} s  10 ms timer task ran (it wanted 0.01 s)")

    async def hog():
        while time.monotonic() - start < 1:
            pass
        print(f"{time.monotonic() - start:5.2f} s  hog stopped spinning")

    await asyncio.gather(ticker(), hog())


asyncio.run(main())
