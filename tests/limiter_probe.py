"""`python -m tests.limiter_probe REDIS_URL NAME RATE COUNT START_AT`: from wall-clock time
START_AT on, acquire COUNT slots from the shared limiter and print the wall-clock time of
each, one per line (run as two processes at once)."""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as aioredis

from workers.market_data.rate_limiter import RedisRateLimiter


async def probe(url: str, name: str, rate: str, count: int, start_at: float) -> list[float]:
    """Acquire `count` slots one after another from `start_at`; return when each was granted."""
    client = aioredis.Redis.from_url(url)
    limiter = RedisRateLimiter(client, name=name, rate=rate)
    await client.ping()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    stamps: list[float] = []
    try:
        for _ in range(count):
            await limiter.acquire()
            stamps.append(time.time())
    finally:
        await client.aclose()
    return stamps


if __name__ == "__main__":
    url, name, rate, count, start_at = sys.argv[1:6]
    for stamp in asyncio.run(probe(url, name, rate, int(count), float(start_at))):
        print(f"{stamp:.6f}")  # noqa: T201 - the probe's output is its result
