"""`python -m tests.limiter_probe REDIS_URL NAME RATE COUNT`: acquire COUNT slots from the
shared limiter and print the wall-clock time of each, one per line (a second process)."""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as aioredis

from workers.rate_limiter import RedisRateLimiter


async def probe(url: str, name: str, rate: str, count: int) -> list[float]:
    """Acquire `count` slots one after another; return when each was granted."""
    client = aioredis.Redis.from_url(url)
    limiter = RedisRateLimiter(client, name=name, rate=rate)
    stamps: list[float] = []
    try:
        for _ in range(count):
            await limiter.acquire()
            stamps.append(time.time())
    finally:
        await client.aclose()
    return stamps


if __name__ == "__main__":
    url, name, rate, count = sys.argv[1:5]
    for stamp in asyncio.run(probe(url, name, rate, int(count))):
        print(f"{stamp:.6f}")  # noqa: T201 - the probe's output is its result
