"""A worker busy with a CPU-heavy snapshot backfill (250 portfolios, 10 years) still
answers: cancels of running fetches and snapshots end REVOKED within 2 s, and the backfill's
own heartbeats keep their cadence (issue 11, items 4 and 6)."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from celery import Celery

from service.core import task_registry
from service.core.cancellation import request_cancel
from service.core.celery_config import create_publisher_app
from service.core.contracts import CONTRACTS
from service.core.settings import Settings
from service.core.trading_calendar import NYSE
from tests.conftest import PINNED_TODAY, start_worker
from tests.market_sim import Sim
from tests.portfolio_data import add_transactions, create_portfolio, new_owner_id, put_closes
from tests.processes import ManagedProcess
from workers.runtime import HEARTBEAT_SECONDS

pytestmark = pytest.mark.slow

# A broker and cancel flags of this module's own (Redis database 11): no other worker
# takes these tasks, and this worker takes no one else's.
REDIS_DB = 11
CANCELS = 20
CANCEL_WITHIN_SECONDS = 2.0
HEAVY_PORTFOLIOS = 250
TARGET_PORTFOLIOS = 20
LONG_WINDOW_PORTFOLIOS = 300
END = NYSE.last_trading_day_on_or_before(PINNED_TODAY - timedelta(days=1))
START = END - timedelta(days=3650)


@dataclass(frozen=True)
class Backfill:
    """Portfolios holding ten years of priced positions."""

    heavy: list[int]
    targets: list[int]


@dataclass(frozen=True)
class Busy:
    """The module's worker and the means to send it work and stop it."""

    worker: ManagedProcess
    celery: Celery
    redis: aioredis.Redis


@pytest.fixture(scope="module")
async def backfill(pool: asyncpg.Pool) -> Backfill:
    """250 + 20 portfolios, each buying four of eight symbols priced every day for 10 years."""
    tag = uuid.uuid4().hex[:4].upper()
    symbols = [f"BF{tag}{i}" for i in range(8)]
    days = NYSE.trading_days(START - timedelta(days=10), END)
    for n, symbol in enumerate(symbols):
        await put_closes(pool, symbol, {d: 20 + n + (i % 50) * 0.37 for i, d in enumerate(days)})
    owner = await new_owner_id(pool)
    ids = []
    for p in range(HEAVY_PORTFOLIOS + TARGET_PORTFOLIOS):
        portfolio = await create_portfolio(pool, owner_id=owner, name=f"backfill {p}")
        held = [symbols[(p + k) % len(symbols)] for k in range(4)]
        await add_transactions(
            pool,
            portfolio,
            [
                {"type": "DEPOSIT", "date": days[0], "amount": 100_000},
                *(
                    {"type": "BUY", "date": days[1], "symbol": s, "quantity": 100, "price": 20}
                    for s in held
                ),
            ],
        )
        ids.append(portfolio)
    return Backfill(heavy=ids[:HEAVY_PORTFOLIOS], targets=ids[HEAVY_PORTFOLIOS:])


@pytest.fixture(scope="module")
async def slow_exchange(sim: Sim) -> AsyncIterator[Sim]:
    """The module's simulated exchange, answering every request after 150 ms."""
    sim.configure(latency_ms=150)
    yield sim
    sim.configure()


@pytest.fixture(scope="module")
async def busy(
    base_env: dict[str, str], slow_exchange: Sim, scratch_dir: Path, backfill: Backfill
) -> AsyncIterator[Busy]:
    """A prefork worker with three children on the module's broker: one for the heavy
    backfill, one for the task to cancel, one for a fetch's helper."""
    redis_url = base_env["REDIS_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}"
    env = {
        **base_env,
        "REDIS_URL": redis_url,
        "YAHOO_BASE_URL": slow_exchange.url,
        "MARKET_DATA_CHUNK_SIZE": "20",
        "MARKET_DATA_MAX_HELPERS": "2",
    }
    process = start_worker(
        env, log_path=scratch_dir / "busy-worker.log", name="busy", concurrency=3
    )
    celery = create_publisher_app(Settings.from_env(env))
    client = aioredis.Redis.from_url(redis_url)
    yield Busy(worker=process, celery=celery, redis=client)
    await client.aclose()
    celery.close()
    process.stop()


async def _state(pool: asyncpg.Pool, task_id: str) -> str | None:
    state: str | None = await pool.fetchval("SELECT state FROM tasks WHERE id = $1", task_id)
    return state


async def _wait_state(pool: asyncpg.Pool, task_id: str, states: set[str], within: float) -> str:
    deadline = time.monotonic() + within
    state = await _state(pool, task_id)
    while state not in states and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        state = await _state(pool, task_id)
    return str(state)


def _send(busy: Busy, name: str, kwargs: dict[str, Any]) -> str:
    task_id = str(uuid.uuid4())
    busy.celery.send_task(name, kwargs=kwargs, task_id=task_id, queue=_queue(name))
    return task_id


def _queue(name: str) -> str:
    return next(contract.queue for contract in CONTRACTS if contract.name == name)


def _heavy_backfill(busy: Busy, backfill: Backfill) -> str:
    return _send(
        busy,
        "create_portfolio_snapshot",
        {"portfolio_ids": backfill.heavy, "start": START.isoformat(), "end": END.isoformat()},
    )


async def _cancel_and_time(busy: Busy, pool: asyncpg.Pool, task_id: str) -> tuple[str, float]:
    asked = time.monotonic()
    await request_cancel(busy.redis, task_id)
    state = await _wait_state(pool, task_id, set(task_registry.TERMINAL_STATES), within=10)
    return state, time.monotonic() - asked


async def _watch_heartbeats(
    pool: asyncpg.Pool, task_id: str, *, seconds: float
) -> tuple[list[datetime], set[str]]:
    """The task's distinct heartbeats and the states it showed over `seconds` (or until it
    finished), with a lost-task sweep at twice the heartbeat interval run all along."""
    beats: list[datetime] = []
    states: set[str] = set()
    observe_until = time.monotonic() + seconds
    while time.monotonic() < observe_until:
        async with pool.acquire() as connection:
            await task_registry.sweep_lost_tasks(
                connection,
                stale_after=timedelta(seconds=2 * HEARTBEAT_SECONDS),
                lost_after=timedelta(hours=1),
            )
        row = await pool.fetchrow("SELECT state, heartbeat_at FROM tasks WHERE id = $1", task_id)
        states.add(row["state"])
        if row["heartbeat_at"] is not None and (not beats or row["heartbeat_at"] != beats[-1]):
            beats.append(row["heartbeat_at"])
        if row["state"] in task_registry.TERMINAL_STATES:
            break
        await asyncio.sleep(0.1)
    return beats, states


class TestCancelAlwaysRevoked:
    @pytest.mark.parametrize("kind", ["fetch", "snapshot"])
    @pytest.mark.timeout(420)
    async def test_twenty_cancels_in_a_row_end_revoked_within_two_seconds(
        self, busy: Busy, backfill: Backfill, pool: asyncpg.Pool, kind: str
    ) -> None:
        """Twenty running tasks in a row, each cancelled at a different point of its run
        beside a CPU-heavy backfill, all end REVOKED (never FAILURE) within 2 s."""
        heavy = _heavy_backfill(busy, backfill)
        outcomes: list[tuple[str, float]] = []
        try:
            for i in range(CANCELS):
                if await _state(pool, heavy) in task_registry.TERMINAL_STATES:
                    heavy = _heavy_backfill(busy, backfill)  # keep the neighbour busy
                if kind == "fetch":
                    tag = uuid.uuid4().hex[:4].upper()
                    task_id = _send(
                        busy,
                        "fetch_market_data",
                        {"symbols": [f"CX{tag}{n}" for n in range(200)], "period": "1mo"},
                    )
                else:
                    task_id = _send(
                        busy,
                        "create_portfolio_snapshot",
                        {
                            "portfolio_ids": backfill.targets,
                            "start": START.isoformat(),
                            "end": END.isoformat(),
                        },
                    )
                running = await _wait_state(pool, task_id, {"STARTED", "PROGRESS"}, within=30)
                assert running in ("STARTED", "PROGRESS"), (i, running, busy.worker.log_tail())
                await asyncio.sleep(0.1 + 0.15 * (i % 6))  # cancel at a spread of points
                outcomes.append(await _cancel_and_time(busy, pool, task_id))
        finally:
            await request_cancel(busy.redis, heavy)
        states = [state for state, _ in outcomes]
        slowest = max(seconds for _, seconds in outcomes)
        assert states == ["REVOKED"] * CANCELS, (outcomes, busy.worker.log_tail(8000))
        assert slowest < CANCEL_WITHIN_SECONDS, outcomes


class TestLoopStaysResponsive:
    @pytest.mark.timeout(180)
    async def test_ten_year_backfill_heartbeats_and_stops(
        self, busy: Busy, backfill: Backfill, pool: asyncpg.Pool
    ) -> None:
        """During a 10-year backfill of 250 portfolios the task heartbeats at least every
        twice the interval, a sweep at that staleness never marks it RETRY, and a cancel
        ends it within 2 s."""
        task_id = _heavy_backfill(busy, backfill)
        running = await _wait_state(pool, task_id, {"STARTED", "PROGRESS"}, within=30)
        assert running in ("STARTED", "PROGRESS"), busy.worker.log_tail()
        beats, states = await _watch_heartbeats(pool, task_id, seconds=20)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(beats)]
        state, seconds = await _cancel_and_time(busy, pool, task_id)
        assert states <= {"STARTED", "PROGRESS"}, states  # still live, never RETRY
        assert len(beats) >= 5, beats
        assert max(gaps) <= 2 * HEARTBEAT_SECONDS, gaps
        assert (state, seconds < CANCEL_WITHIN_SECONDS) == ("REVOKED", True), (state, seconds)


@pytest.fixture(scope="module")
async def long_windows(pool: asyncpg.Pool) -> tuple[int, list[int]]:
    """One owner's LONG_WINDOW_PORTFOLIOS portfolios, each with a snapshot on every trading
    day of ten years (written directly: the metrics, not the replay, are under test)."""
    owner = await new_owner_id(pool)
    days = NYSE.trading_days(START - timedelta(days=10), END)
    ids = []
    for p in range(LONG_WINDOW_PORTFOLIOS):
        portfolio = await create_portfolio(pool, owner_id=owner, name=f"long window {p}")
        await add_transactions(
            pool, portfolio, [{"type": "DEPOSIT", "date": days[0], "amount": 100_000}]
        )
        ids.append(portfolio)
    await pool.execute(
        """
        INSERT INTO portfolio_snapshots (portfolio_id, date, total_value, market_value, cash,
            cost_basis, unrealized_pnl, realized_pnl, income, fees, net_invested, net_flow,
            day_change, holdings)
        SELECT p.id, d.day, v.value, v.value - 1000, 1000, 100000, v.value - 100000, 0, 0, 0,
               100000, CASE WHEN d.n = 1 THEN 100000 ELSE 0 END, 0, '[]'::jsonb
        FROM unnest($1::bigint[]) AS p(id)
        CROSS JOIN unnest($2::date[]) WITH ORDINALITY AS d(day, n)
        CROSS JOIN LATERAL (SELECT 100000 + (d.n % 97) * 13.7 + (p.id % 11) * d.n * 0.9) AS v(value)
        """,
        ids,
        days,
    )
    return owner, ids


class TestLongWindowMetrics:
    @pytest.mark.timeout(120)
    async def test_long_window_performance_keeps_heartbeat_cadence(
        self, busy: Busy, long_windows: tuple[int, list[int]], pool: asyncpg.Pool
    ) -> None:
        """A ten-year performance run over many portfolios heartbeats at least every twice
        the interval, is never marked RETRY by a sweep, and stores every portfolio's metrics."""
        owner, ids = long_windows
        started = time.monotonic()
        task_id = _send(
            busy,
            "calculate_portfolio_performance",
            {"user_id": owner, "start": START.isoformat(), "end": END.isoformat()},
        )
        running = await _wait_state(pool, task_id, {"STARTED", "PROGRESS"}, within=30)
        assert running in ("STARTED", "PROGRESS", "SUCCESS"), busy.worker.log_tail()
        beats, states = await _watch_heartbeats(pool, task_id, seconds=60)
        took = time.monotonic() - started
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(beats)]
        row = await pool.fetchrow("SELECT state, result FROM tasks WHERE id = $1", task_id)
        assert row["state"] == "SUCCESS", (row, busy.worker.log_tail())
        assert states <= {"STARTED", "PROGRESS", "SUCCESS"}, states  # never RETRY
        results = row["result"]["results"]
        assert sorted(r["portfolio_id"] for r in results) == sorted(ids)
        assert all(r["metrics"]["total_return"] is not None for r in results)
        # However long the run took on this machine, a beat at least every two intervals.
        assert len(beats) >= 1 + int(took / (2 * HEARTBEAT_SECONDS)), (beats, took)
        assert max(gaps, default=0.0) <= 2 * HEARTBEAT_SECONDS, gaps
