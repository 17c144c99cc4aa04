"""Per-key request limits shared by every API process through Redis (fixed windows).

Abuse protection, not billing: a fixed window lets a burst of up to twice the limit
straddle a boundary. When Redis is unreachable the limiter fails open and says so in
the log; the request then meets whatever else is down.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from service.core.logs import get_logger
from service.core.rates import Rate
from service.core.redis_keys import submit_window_key

log = get_logger(__name__)
# One atomic round trip (EVALSHA) instead of a MULTI/INCR/EXPIRE/EXEC pipeline.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def window_of(now: float, rate: Rate) -> tuple[int, int]:
    """The current window's start and the seconds until the next one (at least 1)."""
    start = int(now // rate.period_seconds) * rate.period_seconds
    return start, max(1, int(start + rate.period_seconds - now + 0.999))


class RateLimiter:
    """Counts hits per key per window in Redis."""

    def __init__(self, redis_client: aioredis.Redis, rate: Rate, *, namespace: str) -> None:
        self._redis = redis_client
        self._rate = rate
        self._namespace = namespace
        self._hit_script = redis_client.register_script(_HIT_SCRIPT)

    async def hit(self, key: str) -> int | None:
        """Count one request; None if allowed, else the seconds to wait (Retry-After)."""
        start, retry_after = window_of(time.time(), self._rate)
        redis_key = submit_window_key(self._namespace, key, start)
        try:
            count = await self._hit_script(keys=[redis_key], args=[self._rate.period_seconds + 1])
        except (aioredis.RedisError, OSError) as exc:
            log.warning("rate limiter unavailable; allowing request", error=str(exc))
            return None
        return None if int(count) <= self._rate.count else retry_after
