"""A request-rate limiter shared by every worker process, kept in Redis.

GCRA (a token bucket expressed as one timestamp): each `acquire` reserves the
next free slot atomically in one Lua call against Redis's own clock, then
sleeps until it. Two workers on one provider therefore share one schedule, and
adding workers never raises the request rate. `pause` pushes the schedule
back when a provider answers 429 with Retry-After.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from service.core.rates import parse_rate
from service.core.redis_keys import provider_rate_limit_key

# KEYS[1] schedule key; ARGV: interval µs, burst, pause µs (0 = reserve a slot).
# Returns the µs the caller must wait before sending.
_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local pause = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local tolerance = interval * (burst - 1)
local new_tat
local wait = 0
if pause > 0 then
  new_tat = math.max(tat, now + pause + tolerance)
else
  local slot = math.max(now, tat - tolerance)
  wait = slot - now
  new_tat = math.max(tat, now) + interval
end
local ttl = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', ttl)
return wait
"""


class RedisRateLimiter:
    """At most one request per `interval` (plus `burst - 1` in hand) across every process."""

    def __init__(
        self, redis_client: aioredis.Redis, *, name: str, rate: str, burst: int = 1
    ) -> None:
        self._redis = redis_client
        self.key = provider_rate_limit_key(name)
        self.interval = parse_rate(rate).interval
        self.burst = max(1, burst)
        self._script: Any = redis_client.register_script(_SCRIPT)

    async def reserve(self) -> float:
        """Reserve the next slot and return how many seconds until it (no sleeping)."""
        wait_us = await self._script(
            keys=[self.key], args=[int(self.interval * 1_000_000), self.burst, 0]
        )
        return int(wait_us) / 1_000_000

    async def acquire(self) -> float:
        """Wait for this caller's slot; return the seconds waited."""
        wait = await self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def pause(self, seconds: float) -> None:
        """Let no request through for `seconds` (a provider's Retry-After)."""
        if seconds > 0:
            await self._script(
                keys=[self.key],
                args=[int(self.interval * 1_000_000), self.burst, int(seconds * 1_000_000)],
            )
