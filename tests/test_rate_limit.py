"""The per-key submit limiter against a real Redis: counts, expiry, fail-open."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from service.api.rate_limit import RateLimiter
from service.core.rates import Rate
from service.core.redis_keys import SUBMIT_RATE_LIMIT
from service.dev.embedded import free_port

# Day-long fixed windows: a window boundary falling between a test's hits (which would
# reset the count) is then a once-a-day event, not one run in a few hundred.
DAY = 86_400


class TestRateLimiter:
    async def test_limit_then_retry_after(self, redis_client: aioredis.Redis) -> None:
        """Hits up to the limit pass; the next one gets the seconds until the window ends."""
        limiter = RateLimiter(redis_client, Rate(count=2, period_seconds=DAY), namespace="t")
        key = uuid.uuid4().hex
        assert await limiter.hit(key) is None
        assert await limiter.hit(key) is None
        retry_after = await limiter.hit(key)
        assert retry_after is not None
        assert 1 <= retry_after <= DAY

    async def test_window_key_expires(self, redis_client: aioredis.Redis) -> None:
        """The window's counter carries a TTL of one window plus a second, set on first hit."""
        limiter = RateLimiter(redis_client, Rate(count=5, period_seconds=DAY), namespace="ttl")
        key = uuid.uuid4().hex
        await limiter.hit(key)
        await limiter.hit(key)
        [redis_key] = await redis_client.keys(f"{SUBMIT_RATE_LIMIT}ttl:{key}:*")
        assert DAY - 1 <= await redis_client.ttl(redis_key) <= DAY + 1
        assert await redis_client.get(redis_key) in (b"2", "2")

    async def test_survives_script_flush(self, redis_client: aioredis.Redis) -> None:
        """After Redis forgets the script (restart, SCRIPT FLUSH) the limiter loads it again."""
        limiter = RateLimiter(redis_client, Rate(count=1, period_seconds=DAY), namespace="flush")
        key = uuid.uuid4().hex
        assert await limiter.hit(key) is None
        await redis_client.script_flush()
        assert await limiter.hit(key) is not None

    async def test_fails_open_without_redis(self) -> None:
        """With Redis unreachable every hit is allowed (and logged), never an exception."""
        dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            limiter = RateLimiter(dead, Rate(count=1, period_seconds=60), namespace="dead")
            assert await limiter.hit("k") is None
            assert await limiter.hit("k") is None
        finally:
            await dead.aclose()
