"""Helpers for fault tests: task states from the registry, and stored bars against the
simulated exchange's ledger of every bar it served."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import asyncpg

FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


def fresh_symbols(prefix: str, count: int) -> list[str]:
    """`count` symbols no other test asks for."""
    tag = uuid.uuid4().hex[:5].upper()
    return [f"{prefix}{tag}{i}" for i in range(count)]


async def wait_final(pool: asyncpg.Pool, task_ids: list[str], *, within: float) -> dict[str, str]:
    """Poll the registry until every task has ended (or `within` passes); their states."""
    deadline = time.monotonic() + within
    while True:
        rows = await pool.fetch("SELECT id, state FROM tasks WHERE id = ANY($1::text[])", task_ids)
        states = {row["id"]: row["state"] for row in rows}
        if all(states.get(t) in FINAL_STATES for t in task_ids) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.2)


async def wait_state(pool: asyncpg.Pool, task_id: str, state: str, *, within: float) -> bool:
    """Poll until the task is in `state`; whether it got there within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT state FROM tasks WHERE id = $1", task_id) == state:
            return True
        await asyncio.sleep(0.05)
    return False


async def ledger(
    http: aiohttp.ClientSession, exchange: str, symbols: list[str]
) -> dict[tuple[str, str], Decimal]:
    """Every (symbol, ISO date) → close the exchange served for `symbols`."""
    async with http.post(f"{exchange}/_sim/ledger", json=symbols) as response:
        assert response.status == 200
        served = await response.json()
    return {
        (symbol, day): Decimal(str(close))
        for symbol, bars in served.items()
        for day, close in bars.items()
    }


async def stored_bars(
    pool: asyncpg.Pool, symbols: list[str]
) -> tuple[dict[tuple[str, str], Decimal], int]:
    """Every stored (symbol, ISO date) → close for `symbols`, and the number of rows (a
    duplicate would make it exceed the number of keys)."""
    rows = await pool.fetch(
        "SELECT symbol, date, close FROM daily_prices WHERE symbol = ANY($1::text[])", symbols
    )
    bars = {(r["symbol"], r["date"].isoformat()): Decimal(r["close"]).normalize() for r in rows}
    return bars, len(rows)


async def assert_stored_equals_served(
    pool: asyncpg.Pool, http: aiohttp.ClientSession, exchange: str, symbols: list[str]
) -> int:
    """Stored bars equal the ledger exactly (no bar lost, none extra, none twice); returns
    how many bars that is."""
    served = await ledger(http, exchange, symbols)
    stored, rows = await stored_bars(pool, symbols)
    served = {key: close.normalize() for key, close in served.items()}
    assert {s for s, _ in served} == set(symbols), "the exchange never served some symbols"
    missing = served.keys() - stored.keys()
    extra = stored.keys() - served.keys()
    assert not missing, f"{len(missing)} served bars not stored, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} stored bars never served, e.g. {sorted(extra)[:3]}"
    wrong = [key for key in served if stored[key] != served[key]]
    assert not wrong, f"{len(wrong)} closes differ, e.g. {wrong[:3]}"
    assert rows == len(served)
    return rows


@contextlib.asynccontextmanager
async def exchange_latency(
    http: aiohttp.ClientSession, exchange: str, *, latency_ms: int
) -> AsyncIterator[None]:
    """The exchange answers each request after about `latency_ms`; defaults restored after."""
    async with http.put(f"{exchange}/_sim/config", json={"latency_ms": latency_ms}) as response:
        assert response.status == 200
    try:
        yield
    finally:
        async with http.put(f"{exchange}/_sim/config", json={}) as response:
            assert response.status == 200
