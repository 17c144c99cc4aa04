"""API keys resolved from memory, with revocation still effective on the very next request.

Each API process keeps key digest → `User` for at most `max_entries` keys, least recently
used first out. Postgres keeps one counter, the key generation, that every revocation,
key deletion and change of a user's email or admin flag bumps in its own transaction
(migration 0011). Before answering from memory, a request reads the generation with a
query that *starts after the request arrived*; if it moved, the whole cache is dropped.
A request that arrives after a revocation committed therefore always sees it, with no
wait and no timing assumption, which LISTEN/NOTIFY alone cannot give: a notification
reaches the API some time after the commit, so the next request could still beat it.

The generation read is shared: every request that arrives before the next read starts
joins it, so under load one tiny query serves a batch of requests, where the uncached
path cost every request a key lookup. An entry is served only while a fresh read equals
the generation it was looked up at; the counter only grows, so equal means unchanged.
Lookups of unknown or malformed keys are never cached, and an entry is stored only if its
lookup saw the generation the cache currently trusts (a lookup that raced a revocation is
dropped, not stored).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import asyncpg

from service.core.users import User, hash_api_key, key_generation, looks_like_api_key, lookup_key

DEFAULT_MAX_ENTRIES = 10_000


class SharedFreshRead:
    """`await read()` returns a value from a `fetch` that started after the call; callers
    that arrive before the next fetch starts share it."""

    def __init__(self, fetch: Callable[[], Awaitable[int]]) -> None:
        self._fetch = fetch
        self._queued: asyncio.Future[int] | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self.fetches = 0

    async def read(self) -> int:
        """A value fetched by a query that started after this call."""
        if self._queued is None:
            self._queued = asyncio.get_running_loop().create_future()
            # Mark an exception retrieved even if every waiter was cancelled meanwhile.
            self._queued.add_done_callback(_retrieve)
        batch = self._queued
        self._start_queued()
        # A cancelled caller must not cancel the fetch the others wait on.
        return await asyncio.shield(batch)

    def _start_queued(self) -> None:
        if self._in_flight is None and self._queued is not None:
            self.fetches += 1
            # Held here: the event loop keeps only a weak reference to a running task.
            self._in_flight = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        # The batch closes when this task first runs, before the fetch is sent, so every
        # caller in it arrived before the fetch started; later callers wait for the next.
        batch, self._queued = self._queued, None
        assert batch is not None  # only _start_queued starts this task
        try:
            value = await self._fetch()
        except Exception as exc:  # noqa: BLE001  # handed to every waiter of this batch
            batch.set_exception(exc)
        else:
            batch.set_result(value)
        finally:
            self._in_flight = None
            self._start_queued()


def _retrieve(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()


class ApiKeyCache:
    """Key → `User` for the API process, valid while the key generation stands still."""

    def __init__(self, pool: asyncpg.Pool, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._pool = pool
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, User] = OrderedDict()
        self._generation: int | None = None
        self.generation_reads = SharedFreshRead(lambda: key_generation(pool))

    def __len__(self) -> int:
        return len(self._entries)

    async def authenticate(self, api_key: str) -> User | None:
        """The user owning the active `api_key` as of a read that started after this call,
        or None."""
        if not looks_like_api_key(api_key):
            return None
        generation = await self.generation_reads.read()
        if generation != self._generation:
            self._entries.clear()
            self._generation = generation
        key_hash = hash_api_key(api_key)
        user = self._entries.get(key_hash)
        if user is not None:
            self._entries.move_to_end(key_hash)
            return user
        async with self._pool.acquire() as connection:
            user, seen = await lookup_key(connection, key_hash=key_hash)
        if user is not None and seen == self._generation:
            self._entries[key_hash] = user
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return user
