"""The API's in-memory key cache against a real Postgres, and its shared generation read."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from service.api.key_cache import ApiKeyCache, SharedFreshRead
from service.core import users


class GatedFetch:
    """A fetch that records when each call started and returns only when released."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.release: list[asyncio.Event] = []
        self.fail_next = False

    async def __call__(self) -> int:
        number = len(self.started)
        self.started.append(number)
        gate = asyncio.Event()
        self.release.append(gate)
        await gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionResetError("database went away")
        return number


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestSharedFreshRead:
    async def test_callers_during_a_fetch_share_the_next_one(self) -> None:
        """A caller arriving while a fetch is in flight gets the value of a later fetch,
        and all such callers share that one fetch."""
        fetch = GatedFetch()
        reads = SharedFreshRead(fetch)
        first = asyncio.create_task(reads.read())
        await _settle()
        later = [asyncio.create_task(reads.read()) for _ in range(10)]
        await _settle()
        assert fetch.started == [0]
        fetch.release[0].set()
        await _settle()
        assert await first == 0
        assert fetch.started == [0, 1]
        fetch.release[1].set()
        assert await asyncio.gather(*later) == [1] * 10
        assert reads.fetches == 2

    async def test_callers_before_the_fetch_starts_share_it(self) -> None:
        """Callers that arrive in the same turn of the event loop, before the fetch task
        runs, all share that one fetch."""
        fetch = GatedFetch()
        reads = SharedFreshRead(fetch)
        callers = [asyncio.create_task(reads.read()) for _ in range(10)]
        await _settle()
        fetch.release[0].set()
        assert await asyncio.gather(*callers) == [0] * 10
        assert reads.fetches == 1

    async def test_a_failed_fetch_fails_its_waiters_only(self) -> None:
        """An error of a fetch reaches every caller waiting on it; the next read fetches
        again and succeeds."""
        fetch = GatedFetch()
        reads = SharedFreshRead(fetch)
        first = asyncio.create_task(reads.read())
        await _settle()
        waiting = [asyncio.create_task(reads.read()) for _ in range(3)]
        await _settle()
        fetch.release[0].set()
        assert await first == 0
        await _settle()
        fetch.fail_next = True
        fetch.release[1].set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(outcome, ConnectionResetError) for outcome in outcomes)
        again = asyncio.create_task(reads.read())
        await _settle()
        fetch.release[2].set()
        assert await again == 2

    async def test_a_cancelled_caller_leaves_the_fetch_running(self) -> None:
        """Cancelling one caller does not cancel the fetch another caller waits on."""
        fetch = GatedFetch()
        reads = SharedFreshRead(fetch)
        first = asyncio.create_task(reads.read())
        await _settle()
        quitter = asyncio.create_task(reads.read())
        stayer = asyncio.create_task(reads.read())
        await _settle()
        quitter.cancel()
        fetch.release[0].set()
        assert await first == 0
        await _settle()
        fetch.release[1].set()
        assert await stayer == 1
        with pytest.raises(asyncio.CancelledError):
            await quitter


async def _issue(pool: asyncpg.Pool) -> users.IssuedKey:
    async with pool.acquire() as db:
        return await users.create_user(db, email=f"{uuid.uuid4().hex[:10]}@cache.test")


class TestApiKeyCache:
    async def test_a_cached_key_costs_no_lookup(self, pool: asyncpg.Pool) -> None:
        """A second request with a key is answered from memory: its row can be gone from
        under it (here: locked away) without the answer changing, until the generation moves."""
        cache = ApiKeyCache(pool)
        issued = await _issue(pool)
        first = await cache.authenticate(issued.api_key)
        assert first is not None
        assert first.key_id == issued.key_id
        async with pool.acquire() as blocker, blocker.transaction():
            # A lookup would wait for this lock; the cached answer does not.
            await blocker.execute("LOCK TABLE api_keys IN EXCLUSIVE MODE")
            again = await asyncio.wait_for(cache.authenticate(issued.api_key), timeout=30)
        assert again == first

    async def test_a_revocation_empties_the_cache_at_once(self, pool: asyncpg.Pool) -> None:
        """After any key is revoked, the next call re-reads: the revoked key is refused and
        an unrelated cached key is looked up again (and still works)."""
        cache = ApiKeyCache(pool)
        keep, drop = await _issue(pool), await _issue(pool)
        assert await cache.authenticate(keep.api_key) is not None
        assert await cache.authenticate(drop.api_key) is not None
        assert len(cache) == 2
        async with pool.acquire() as db:
            assert await users.revoke_key(db, key_id=drop.key_id)
        assert await cache.authenticate(drop.api_key) is None
        assert len(cache) == 0
        assert await cache.authenticate(keep.api_key) is not None
        assert len(cache) == 1

    async def test_the_cache_is_bounded(self, pool: asyncpg.Pool) -> None:
        """The cache holds at most `max_entries` keys, dropping the least recently used;
        an evicted key still authenticates (by a fresh lookup)."""
        cache = ApiKeyCache(pool, max_entries=3)
        issued = [await _issue(pool) for _ in range(5)]
        for key in issued:
            assert await cache.authenticate(key.api_key) is not None
        assert len(cache) == 3
        evicted = await cache.authenticate(issued[0].api_key)
        assert evicted is not None
        assert evicted.key_id == issued[0].key_id
        assert len(cache) == 3

    async def test_unknown_and_malformed_keys_are_not_cached(self, pool: asyncpg.Pool) -> None:
        """Unknown and malformed keys are refused and leave nothing in the cache."""
        cache = ApiKeyCache(pool)
        assert await cache.authenticate(users.new_api_key()) is None
        assert await cache.authenticate("not-a-key") is None
        assert await cache.authenticate("fdk_" + "x" * 200) is None
        assert len(cache) == 0

    async def test_cached_users_are_their_own(self, pool: asyncpg.Pool) -> None:
        """Two cached keys of two users each resolve to their own user, however interleaved."""
        cache = ApiKeyCache(pool)
        a, b = await _issue(pool), await _issue(pool)
        for _ in range(3):
            user_a = await cache.authenticate(a.api_key)
            user_b = await cache.authenticate(b.api_key)
            assert user_a is not None
            assert user_b is not None
            assert (user_a.id, user_a.key_id) == (a.user_id, a.key_id)
            assert (user_b.id, user_b.key_id) == (b.user_id, b.key_id)
