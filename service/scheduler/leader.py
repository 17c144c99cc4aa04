"""Leader election: a Postgres session advisory lock on a dedicated connection, plus an epoch.

The lock lives exactly as long as the connection's server session. The session is
given short idle and TCP timeouts so a frozen or cut-off leader loses it: Postgres
ends a session idle longer than `idle_session_timeout`, and the heartbeat (every
~2 s) keeps a live leader's session from ever being idle that long. Each new leader
bumps the epoch row; claims are fenced on it (see `ledger.claim_fire`).
"""

from __future__ import annotations

import asyncpg

from service.core.settings import Settings

# "findsch" as an integer: one advisory-lock key shared by every scheduler replica.
LOCK_KEY = 0x66_69_6E_64_73_63_68


class LeadershipLost(Exception):
    """This process is no longer (or can no longer prove it is) the leader."""


def lock_server_settings(settings: Settings, *, name: str) -> dict[str, str]:
    """Server settings of the lock connection: timeouts that end a frozen leader's session."""
    timeout_ms = str(settings.scheduler_session_timeout_seconds * 1000)
    keepalive_idle = max(1, settings.scheduler_session_timeout_seconds // 3)
    return {
        "application_name": f"findash-scheduler {name}"[:63],
        "idle_session_timeout": timeout_ms,
        "idle_in_transaction_session_timeout": timeout_ms,
        "statement_timeout": timeout_ms,
        "tcp_keepalives_idle": str(keepalive_idle),
        "tcp_keepalives_interval": "1",
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": timeout_ms,
    }


async def open_lock_connection(settings: Settings, *, name: str) -> asyncpg.Connection:
    """A dedicated (never pooled) connection for the lock, the heartbeat and the claims."""
    connection: asyncpg.Connection = await asyncpg.connect(
        settings.database_url,
        timeout=5,
        command_timeout=settings.scheduler_heartbeat_seconds + 3,
        server_settings=lock_server_settings(settings, name=name),
    )
    return connection


async def try_acquire(connection: asyncpg.Connection, *, name: str) -> int | None:
    """Take the lock if free and start a new term; return its epoch, or None if another leads."""
    acquired = await connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
    if not acquired:
        return None
    epoch: int = await connection.fetchval(
        "UPDATE scheduler_leader SET epoch = epoch + 1, leader = $1, acquired_at = now()"
        " WHERE id = 1 RETURNING epoch",
        name,
    )
    return epoch


async def heartbeat(connection: asyncpg.Connection, *, epoch: int) -> None:
    """Prove the session (hence the lock) is alive and the term is still current."""
    current = await connection.fetchval("SELECT epoch FROM scheduler_leader WHERE id = 1")
    if current != epoch:
        raise LeadershipLost(f"epoch moved from {epoch} to {current}")
