"""Postgres transactions that ride out a restart: retried whole, with backoff, for a while.

A task body's reads and writes go through `in_transaction`. When the connection is lost
(the server restarted, a pooled connection went stale, the server is starting or shutting
down) the whole transaction runs again on a fresh connection, backing off up to 1 s a try,
until `retry_seconds` have passed. Every findash write is an idempotent merge, so a commit
whose acknowledgement was lost is harmless to replay, and a transaction is all or nothing,
so a retried batch never leaves half its rows. Other errors are not retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from service.core.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 1.0
_CLOSED_MARKERS = ("connection is closed", "connection was closed")


def is_connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the server or the connection went away (worth retrying)."""
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError | OSError,
    ):
        return not isinstance(exc, asyncpg.exceptions.QueryCanceledError)
    if isinstance(exc, asyncpg.InterfaceError):
        return any(marker in str(exc) for marker in _CLOSED_MARKERS)
    return False


async def in_transaction(
    pool: asyncpg.Pool,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    retry_seconds: float,
    what: str,
) -> T:
    """Run `work(connection)` in one transaction; rerun it whole while the connection is
    lost, for up to `retry_seconds`."""
    deadline = time.monotonic() + retry_seconds
    attempt = 0
    while True:
        try:
            async with pool.acquire() as connection, connection.transaction():
                return await work(connection)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if not is_connection_lost(exc):
                raise
            attempt += 1
            delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
            if time.monotonic() + delay > deadline:
                raise
            log.warning(
                "postgres unavailable; transaction retried",
                what=what,
                attempt=attempt,
                error=str(exc) or type(exc).__name__,
            )
            await asyncio.sleep(delay)
