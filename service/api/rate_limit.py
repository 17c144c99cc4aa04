"""Per-key limits shared by every API process through Redis: requests and symbols per
fixed window, and open event streams.

Abuse protection, not billing: a fixed window lets a burst of up to twice the limit
straddle a boundary. When Redis is unreachable the limiters fail open and say so in
the log; the request then meets whatever else is down.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis

from service.core.logs import get_logger
from service.core.rates import Rate
from service.core.redis_keys import event_streams_key, submit_window_key

log = get_logger(__name__)
# One atomic round trip (EVALSHA) instead of a MULTI/INCR/EXPIRE/EXEC pipeline.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
# Spend ARGV[2] from the window's budget of ARGV[3] only if it all fits: a refused submit
# costs nothing, so a smaller one may still pass in the same window.
_SPEND_SCRIPT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return 0 end
if redis.call('INCRBY', KEYS[1], ARGV[2]) == tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 1
"""
# Drop expired leases, then lease a slot (score = lease end) if fewer than ARGV[3] are held.
_LEASE_SCRIPT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
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
        self._spend_script = redis_client.register_script(_SPEND_SCRIPT)

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

    async def spend(self, key: str, amount: int) -> int | None:
        """Spend `amount` units (symbols) of this window's budget; None if they fit, else
        the seconds until the next window (Retry-After). An amount over the whole budget
        counts as the whole budget, so it passes into an empty window and fills it."""
        start, retry_after = window_of(time.time(), self._rate)
        redis_key = submit_window_key(self._namespace, key, start)
        cost = min(max(amount, 0), self._rate.count)
        if cost == 0:
            return None
        try:
            fits = await self._spend_script(
                keys=[redis_key], args=[self._rate.period_seconds + 1, cost, self._rate.count]
            )
        except (aioredis.RedisError, OSError) as exc:
            log.warning("rate limiter unavailable; allowing request", error=str(exc))
            return None
        return None if int(fits) else retry_after


class StreamSlots:
    """At most `per_key` open event streams per API key, across API processes.

    A slot is a lease that the open stream renews; closing the stream frees it at once, and
    a stream whose process died frees it when the lease runs out.
    """

    def __init__(
        self, redis_client: aioredis.Redis, *, per_key: int, lease_seconds: float = 60.0
    ) -> None:
        self._redis = redis_client
        self._per_key = per_key
        self.lease_seconds = lease_seconds
        self._lease_script = redis_client.register_script(_LEASE_SCRIPT)

    async def acquire(self, key: str) -> str | None:
        """A new slot's id for `key`, or None when `key` already holds `per_key` streams.
        Fails open (a slot id that holds nothing) when Redis is unreachable."""
        slot = uuid.uuid4().hex
        now = time.time()
        try:
            leased = await self._lease_script(
                keys=[event_streams_key(key)],
                args=[now, now + self.lease_seconds, self._per_key, slot, int(self.lease_seconds)],
            )
        except (aioredis.RedisError, OSError) as exc:
            log.warning("stream slots unavailable; allowing stream", error=str(exc))
            return slot
        return slot if int(leased) else None

    async def renew(self, key: str, slot: str) -> None:
        """Extend `slot`'s lease (best effort)."""
        try:
            await self._redis.zadd(
                event_streams_key(key), {slot: time.time() + self.lease_seconds}, xx=True
            )
        except (aioredis.RedisError, OSError) as exc:
            log.warning("stream slot renewal failed", error=str(exc))

    async def release(self, key: str, slot: str) -> None:
        """Free `slot` (best effort; the lease frees it otherwise)."""
        try:
            await self._redis.zrem(event_streams_key(key), slot)
        except (aioredis.RedisError, OSError) as exc:
            log.warning("stream slot release failed", error=str(exc))
