"""Split a large fetch into chunks that any worker can claim, under one parent task.

The parent task stores the chunks in Redis, publishes a few helper tasks and
then works through the chunks itself alongside them; every claim is a lease
renewed while the chunk runs, so a chunk whose worker died is claimed again
once its lease lapses, and the parent never waits on a helper that is not
running (no deadlock when every worker slot holds a parent). Each chunk is
small enough to finish well inside the task time limit and the broker's
visibility timeout; the user follows only the parent's task id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from service.core.redis_keys import fetch_job_key

JOB_TTL_SECONDS = 86_400
LEASE_SECONDS = 30
RENEW_SECONDS = 10

# KEYS: pending list, claims zset, results hash. ARGV: lease seconds.
# Returns a chunk index, or nil when nothing is claimable now.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[1])
while true do
  local i = redis.call('LPOP', KEYS[1])
  if not i then
    local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
    if #expired == 0 then return nil end
    i = expired[1]
  end
  if redis.call('HEXISTS', KEYS[3], i) == 1 then
    redis.call('ZREM', KEYS[2], i)
  else
    redis.call('ZADD', KEYS[2], now + lease, i)
    return i
  end
end
"""


class FetchJob:
    """The Redis ledger of one chunked fetch (keys expire after a day)."""

    def __init__(self, redis_client: aioredis.Redis, job_id: str) -> None:
        self._redis = redis_client
        self.job_id = job_id
        self.spec_key = fetch_job_key(job_id, "spec")
        self.chunks_key = fetch_job_key(job_id, "chunks")
        self.pending_key = fetch_job_key(job_id, "pending")
        self.claims_key = fetch_job_key(job_id, "claims")
        self.results_key = fetch_job_key(job_id, "results")
        self.done_key = fetch_job_key(job_id, "done")
        self._claim: Any = redis_client.register_script(_CLAIM)

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key of the job."""
        return (
            self.spec_key,
            self.chunks_key,
            self.pending_key,
            self.claims_key,
            self.results_key,
            self.done_key,
        )

    async def create(self, chunks: Sequence[Sequence[str]], spec: dict[str, Any]) -> None:
        """Store the chunks (all pending) and the request they belong to."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*self.keys)
            pipe.set(self.spec_key, json.dumps(spec))
            pipe.hset(
                self.chunks_key,
                mapping={str(i): json.dumps(list(chunk)) for i, chunk in enumerate(chunks)},
            )
            pipe.rpush(self.pending_key, *[str(i) for i in range(len(chunks))])
            pipe.set(self.done_key, 0)
            for key in self.keys:
                pipe.expire(key, JOB_TTL_SECONDS)
            await pipe.execute()

    async def spec(self) -> dict[str, Any] | None:
        """The request the job was created for, or None if the job is gone."""
        raw = await self._redis.get(self.spec_key)
        return None if raw is None else dict(json.loads(raw))

    async def claim(self) -> tuple[int, list[str]] | None:
        """Lease the next pending (or abandoned) chunk: its index and symbols."""
        index = await self._claim(
            keys=[self.pending_key, self.claims_key, self.results_key], args=[LEASE_SECONDS]
        )
        if index is None:
            return None
        raw = await self._redis.hget(self.chunks_key, index)
        if raw is None:
            return None
        return int(index), list(json.loads(raw))

    async def renew(self, index: int) -> None:
        """Extend the lease of a chunk still being worked on."""
        now = (await self._redis.time())[0]
        await self._redis.zadd(self.claims_key, {str(index): now + LEASE_SECONDS}, xx=True)

    async def complete(self, index: int, result: dict[str, Any]) -> None:
        """Record a chunk's result and release its lease (a second completion is ignored)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.results_key, str(index), json.dumps(result))
            pipe.zrem(self.claims_key, str(index))
            await pipe.execute()

    async def add_done(self, count: int = 1) -> None:
        """Count symbols finished, for the parent's progress."""
        await self._redis.incrby(self.done_key, count)

    async def done(self) -> int:
        """Symbols finished so far (a re-run chunk counts twice; callers clamp)."""
        return int(await self._redis.get(self.done_key) or 0)

    async def chunk_count(self) -> int:
        """How many chunks the job has."""
        return int(await self._redis.hlen(self.chunks_key))

    async def results(self) -> dict[int, dict[str, Any]]:
        """Every completed chunk's result by index."""
        raw = await self._redis.hgetall(self.results_key)
        return {int(k): json.loads(v) for k, v in raw.items()}

    async def finished(self) -> bool:
        """Whether every chunk has a result."""
        total = await self.chunk_count()
        return total > 0 and int(await self._redis.hlen(self.results_key)) >= total

    async def stop(self) -> None:
        """Withdraw every unclaimed chunk (the job was cancelled)."""
        await self._redis.delete(self.pending_key)

    async def drop(self) -> None:
        """Delete the job's keys."""
        await self._redis.delete(*self.keys)
