"""Per-key request limits shared by every API process through Redis (fixed windows).

Abuse protection, not billing: a fixed window lets a burst of up to twice the limit
straddle a boundary. When Redis is unreachable the limiter fails open and says so in
the log; the request then meets whatever else is down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from service.core.logs import get_logger
from service.core.redis_keys import submit_window_key

log = get_logger(__name__)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
# One atomic round trip (EVALSHA) instead of a MULTI/INCR/EXPIRE/EXEC pipeline.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


@dataclass(frozen=True, slots=True)
class Rate:
    """`limit` requests per `window_seconds`."""

    limit: int
    window_seconds: int


def parse_rate(text: str) -> Rate:
    """Parse `120/minute`, `5/second`, …"""
    count, _, unit = text.partition("/")
    if unit not in _UNIT_SECONDS or not count.isdigit() or int(count) < 1:
        raise ValueError(f"rate must look like 120/minute, got {text!r}")
    return Rate(limit=int(count), window_seconds=_UNIT_SECONDS[unit])


def window_of(now: float, rate: Rate) -> tuple[int, int]:
    """The current window's start and the seconds until the next one (at least 1)."""
    start = int(now // rate.window_seconds) * rate.window_seconds
    return start, max(1, int(start + rate.window_seconds - now + 0.999))


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
            count = await self._hit_script(keys=[redis_key], args=[self._rate.window_seconds + 1])
        except (aioredis.RedisError, OSError) as exc:
            log.warning("rate limiter unavailable; allowing request", error=str(exc))
            return None
        return None if int(count) <= self._rate.limit else retry_after
