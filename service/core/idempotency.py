"""Idempotency-Key: a repeated request with the same key and body gets the first answer.

Keys are scoped to the API key that sent them and kept 24 hours. The same key with a
different body is a client error (422).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import asyncpg

RETENTION_HOURS = 24
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What was answered the first time."""

    request_hash: str
    status_code: int
    body: Any


def request_fingerprint(*, method: str, path: str, body: bytes) -> str:
    """A digest of what was asked, to tell a true repeat from a reused key."""
    return hashlib.sha256(b"\0".join([method.encode(), path.encode(), body])).hexdigest()


async def lock_key(connection: asyncpg.Connection, *, api_key_id: int, key: str) -> None:
    """Serialise concurrent requests with the same key until the transaction ends."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", key, api_key_id
    )


async def find(
    connection: asyncpg.Connection, *, api_key_id: int, key: str
) -> StoredResponse | None:
    """The stored answer for this key, if younger than the retention period."""
    row = await connection.fetchrow(
        """
        SELECT request_hash, status_code, response FROM idempotency_keys
        WHERE api_key_id = $1 AND key = $2 AND created_at > now() - make_interval(hours => $3)
        """,
        api_key_id,
        key,
        RETENTION_HOURS,
    )
    if row is None:
        return None
    return StoredResponse(row["request_hash"], row["status_code"], row["response"])


async def store(
    connection: asyncpg.Connection,
    *,
    api_key_id: int,
    key: str,
    request_hash: str,
    status_code: int,
    body: Any,
) -> None:
    """Remember the answer (replacing an expired one)."""
    await connection.execute(
        """
        INSERT INTO idempotency_keys (api_key_id, key, request_hash, status_code, response)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (api_key_id, key) DO UPDATE SET
            request_hash = excluded.request_hash, status_code = excluded.status_code,
            response = excluded.response, created_at = now()
        """,
        api_key_id,
        key,
        request_hash,
        status_code,
        body,
    )


async def forget(connection: asyncpg.Connection, *, api_key_id: int, key: str) -> None:
    """Drop the stored answer for this key (its request did not go through after all)."""
    await connection.execute(
        "DELETE FROM idempotency_keys WHERE api_key_id = $1 AND key = $2", api_key_id, key
    )


async def prune(connection: asyncpg.Connection) -> int:
    """Delete expired keys; returns how many."""
    status: str = await connection.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)",
        RETENTION_HOURS,
    )
    return int(status.rsplit(" ", 1)[-1])
