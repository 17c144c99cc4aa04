"""Reads a dashboard polls: JSON that Postgres builds, sent as it is, with an ETag.

A year of snapshots or prices is a few hundred rows; turning each into Python objects
(numeric → float, jsonb → dict) and back into JSON cost more than everything else in the
request. Postgres builds the body with `json_agg` instead and the handler passes the bytes
through. Numbers are the stored `numeric` values (`123.450000`): the same values as before,
always with a decimal point, exact.

The ETag is an MD5 of a version that moves with every committed write to what the body is
built from, deletions included, computed without reading the rows' JSON: for snapshots and
prices, the set of transactions that wrote the portfolio's snapshots or the symbol's prices
(`snapshot_writes`, `price_writes`, appended by triggers, migrations/0013) with the range's
bounds, a few index entries however long the range; for the task list, each listed task's
id and row version (`xmin`, new on every insert or update). A matching `If-None-Match`
answers 304 with no body.

Building the JSON costs Postgres far more than the version (a year of snapshots with
holdings: about 6 ms of its CPU against 0.5 ms), so each API process keeps the bodies it
built lately, with their version, up to `MAX_CACHED_BODY_BYTES`. A poll always reads the
version (and the ownership or existence check) fresh; the kept body is sent only while the
version is the one it was built at. A body is built, when needed, in the same statement as
its version, so the two always describe one snapshot of the rows. Responses say
`Cache-Control: private, no-cache`: only the caller's own cache keeps them, and it asks
again each time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import asyncpg
from litestar import MediaType, Response

CACHE_CONTROL = "private, no-cache"
MAX_CACHED_BODY_BYTES = 32 * 2**20


@dataclass(frozen=True, slots=True)
class PolledQuery:
    """A polled read: `version_sql` answers the boolean column `exists` (the thing exists
    and the caller may see it) and `version`; `body_sql` builds the JSON text. Both take
    the same parameters, of which `body_sql` may use a prefix."""

    kind: str
    version_sql: str
    body_sql: str
    exists: str
    both_sql: str = field(init=False)

    def __post_init__(self) -> None:
        both = (
            f"SELECT v.*, CASE WHEN v.{self.exists} THEN ({self.body_sql}) END AS body "  # noqa: S608 - constant text
            f"FROM ({self.version_sql}) v"
        )
        object.__setattr__(self, "both_sql", both)


V = TypeVar("V")


class VersionedCache(Generic[V]):
    """Recently computed values by key, each with the version of the inputs it was computed
    from; the least recently used go first once their sizes add up to more than
    `max_bytes`."""

    def __init__(self, *, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[Hashable, tuple[Hashable, V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, *, version: Hashable) -> V | None:
        """The value kept for `key` if it was computed at `version`."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def peek(self, key: Hashable) -> tuple[Hashable, V] | None:
        """The version and value kept for `key`, whatever the version."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0], entry[1]

    def knows(self, key: Hashable) -> bool:
        """Whether a value (of any version) is kept for `key`."""
        return key in self._entries

    def put(self, key: Hashable, *, version: Hashable, value: V, size: int) -> None:
        """Keep `value` (about `size` bytes) for `key` at `version`, replacing any older one."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[2]
        if size > self._max_bytes:
            return
        self._entries[key] = (version, value, size)
        self._bytes += size
        while self._bytes > self._max_bytes:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped


async def polled_response(
    connection: asyncpg.Connection,
    *,
    query: PolledQuery,
    args: tuple[object, ...],
    if_none_match: str | None,
    cache: VersionedCache[bytes],
) -> Response[bytes] | None:
    """The 200 or 304 answer to `query` with `args`; None when its `exists` column is false.
    One round trip, or two when a kept body turns out to be of an older version."""
    key = (query.kind, *args)
    with_body = not cache.knows(key)
    found = await connection.fetchrow(query.both_sql if with_body else query.version_sql, *args)
    if not found[query.exists]:
        return None
    version: str = found["version"]
    etag = make_etag(query.kind, version)
    if etag_matches(if_none_match, etag):
        return not_modified(etag=etag)
    body = cache.get(key, version=version)
    if body is None:
        if not with_body:
            found = await connection.fetchrow(query.both_sql, *args)
            if not found[query.exists]:
                return None
            version = found["version"]
            etag = make_etag(query.kind, version)
        body = found["body"].encode()
        cache.put(key, version=version, value=body, size=len(body))
    return json_response(body, etag=etag)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag` (weak comparison, RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


def make_etag(kind: str, version: str) -> str:
    """A strong entity tag for representation `kind` (shape and options) at `version`."""
    return f'"{kind}-{version}"'


def json_response(body: bytes, *, etag: str) -> Response[bytes]:
    """A 200 with a JSON body Postgres built, and its validators."""
    return Response(
        content=body,
        status_code=200,
        media_type=MediaType.JSON,
        headers={"ETag": etag, "Cache-Control": CACHE_CONTROL},
    )


def not_modified(*, etag: str) -> Response[bytes]:
    """A 304: the caller's copy is current."""
    return Response(
        content=b"",
        status_code=304,
        headers={"ETag": etag, "Cache-Control": CACHE_CONTROL},
    )
