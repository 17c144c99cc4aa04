"""The Redis rate limiter: one schedule shared by every process, paused by Retry-After."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
import uuid

import redis.asyncio as aioredis

from service.dev.embedded import EmbeddedRedis
from tests.conftest import ROOT
from workers.market_data.rate_limiter import RedisRateLimiter

RATE_PER_SECOND = 20
PER_PROCESS = 15


def _max_in_window(stamps: list[float], width: float) -> int:
    best = 0
    for i, start in enumerate(stamps):
        best = max(best, sum(1 for s in stamps[i:] if s < start + width))
    return best


class TestSharedLimiter:
    def test_two_processes_share_one_rate(self, redis_server: EmbeddedRedis) -> None:
        """Two processes acquiring from the same limiter together stay at its rate: the
        total takes at least N / rate and no half second holds more than its share."""
        name = f"probe-{uuid.uuid4().hex[:8]}"
        command = [
            sys.executable,
            "-m",
            "tests.limiter_probe",
            redis_server.url,
            name,
            f"{RATE_PER_SECOND}/second",
            str(PER_PROCESS),
            str(time.time() + 3),  # both start together, whatever their start-up time
        ]
        probes = [
            subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(2)
        ]
        outputs = [p.communicate(timeout=60)[0] for p in probes]
        assert all(p.returncode == 0 for p in probes)
        per_process = [[float(line) for line in out.split()] for out in outputs]
        assert [len(s) for s in per_process] == [PER_PROCESS, PER_PROCESS]
        stamps = sorted(s for process in per_process for s in process)
        interval = 1 / RATE_PER_SECOND
        # Slots are never early; a stamp is taken after waking, so the first may be late on a
        # loaded machine (a slack of one slot; a limiter at twice the rate would be 0.7 s off).
        assert stamps[-1] - stamps[0] >= (len(stamps) - 2) * interval
        assert _max_in_window(stamps, 0.5) <= RATE_PER_SECOND // 2 + 3
        # Neither process ran first and alone: their slots interleave.
        first_done = min(max(s) for s in per_process)
        assert sum(1 for s in stamps if s > first_done) < PER_PROCESS

    async def test_reservations_are_spaced_by_the_interval(
        self, redis_client: aioredis.Redis
    ) -> None:
        """Back-to-back reservations are granted one interval apart."""
        limiter = RedisRateLimiter(redis_client, name=f"space-{uuid.uuid4().hex}", rate="1/second")
        waits = [await limiter.reserve() for _ in range(5)]
        assert waits[0] == 0
        # Each slot is one second after the previous one, less the time between the calls.
        for earlier, later in itertools.pairwise(waits):
            assert 0.5 < later - earlier <= 1.0

    async def test_burst_allows_that_many_at_once(self, redis_client: aioredis.Redis) -> None:
        """With a burst of 3, three reservations go at once and the fourth waits."""
        limiter = RedisRateLimiter(
            redis_client, name=f"burst-{uuid.uuid4().hex}", rate="10/second", burst=3
        )
        waits = [await limiter.reserve() for _ in range(4)]
        assert waits[:3] == [0, 0, 0]
        assert waits[3] > 0.05

    async def test_pause_pushes_the_schedule_back(self, redis_client: aioredis.Redis) -> None:
        """After `pause(5)` (a Retry-After), the next slot is about five seconds away."""
        limiter = RedisRateLimiter(
            redis_client, name=f"pause-{uuid.uuid4().hex}", rate="100/second"
        )
        await limiter.pause(5)
        wait = await limiter.reserve()
        assert 4.5 < wait <= 5.0

    async def test_schedule_key_expires(self, redis_client: aioredis.Redis) -> None:
        """An idle limiter leaves no key behind for long."""
        limiter = RedisRateLimiter(redis_client, name=f"ttl-{uuid.uuid4().hex}", rate="1/second")
        await limiter.reserve()
        ttl = await redis_client.pttl(limiter.key)
        assert 0 < ttl <= 3000
