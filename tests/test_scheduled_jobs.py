"""Every scheduled job, sent by a real leader through the broker to a real worker, changes
what users see: quotes of every held symbol, the day's snapshot of every portfolio, and the
weekly pruning. "The fire was sent" is not the assertion; the database is."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.core.contracts import UpdatePortfolioPrices
from service.core.publisher import TaskPublisher
from service.core.settings import Settings
from service.scheduler.jobs import MARKET_JOBS
from service.scheduler.replica import create_publisher
from tests.conftest import PINNED_START, PINNED_TODAY
from tests.portfolio_data import add_transactions, create_portfolio, new_owner_id, put_closes
from tests.scheduling import run_leader_at
from workers.market_data.simulated_exchange.series import build_series

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.timeout(90)]

# The session's pinned day (Wednesday 2026-11-18, EST = UTC-5) at chosen New York times.
HOURLY_AT = datetime(2026, 11, 18, 19, 5, tzinfo=UTC)  # 14:05: the 14:00 hourly fire is due
EXTENDED_AT = datetime(2026, 11, 18, 12, 35, tzinfo=UTC)  # 07:35: the 07:30 extended fire
SNAPSHOT_AT = datetime(2026, 11, 18, 21, 35, tzinfo=UTC)  # 16:35: the 16:30 snapshot fire
CLEANUP_AT = datetime(2026, 11, 22, 9, 5, tzinfo=UTC)  # Sunday 04:05: the weekly cleanup


@pytest.fixture(scope="module")
def publisher(settings: Settings) -> Iterator[TaskPublisher]:
    """The scheduler's publisher on the session's Redis."""
    sender = create_publisher(settings)
    yield sender
    sender.close()


async def fired_and_finished(pool: asyncpg.Pool, job_id: str) -> dict[str, Any]:
    """The registry row of the task the job's sent fire became, once it has finished."""
    task_id = await pool.fetchval(
        "SELECT task_id::text FROM schedule_fires WHERE job_id = $1 AND state = 'sent'", job_id
    )
    assert task_id is not None, f"{job_id} was not sent"
    for _ in range(600):
        row = await pool.fetchrow(
            "SELECT name, state, result, error FROM tasks WHERE id = $1", task_id
        )
        if row is not None and row["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
            assert row["state"] == "SUCCESS", row["error"]
            return dict(row)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the {job_id} fire ({task_id}) did not finish")


def test_every_market_job_is_covered() -> None:
    """This module exercises each job of the market schedule."""
    covered = {
        "hourly-price-update",
        "extended-hours-update",
        "session-closes",
        "daily-snapshot",
        "weekly-cleanup",
    }
    assert {job.id for job in MARKET_JOBS} == covered


class TestPriceJobs:
    @pytest.mark.parametrize(
        ("job_id", "now"),
        [("hourly-price-update", HOURLY_AT), ("extended-hours-update", EXTENDED_AT)],
    )
    async def test_every_held_symbol_gets_a_fresh_quote(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        publisher: TaskPublisher,
        job_id: str,
        now: datetime,
    ) -> None:
        """After the fire, every symbol held in any portfolio, whoever owns it, has a quote
        written after the fire; a symbol sold out of every portfolio is left alone."""
        tag = uuid.uuid4().hex[:4].upper()
        held_a, held_b, held_c, sold = (f"Q{tag}{n}" for n in "ABCD")
        first = await create_portfolio(pool, owner_id=await new_owner_id(pool), name="first")
        second = await create_portfolio(pool, owner_id=await new_owner_id(pool), name="second")
        day = date(2026, 11, 2)
        await add_transactions(
            pool,
            first,
            [
                {"type": "DEPOSIT", "date": day, "amount": 100_000},
                {"type": "BUY", "date": day, "symbol": held_a, "quantity": 10, "price": 10},
                {"type": "BUY", "date": day, "symbol": held_b, "quantity": 5, "price": 10},
            ],
        )
        await add_transactions(
            pool,
            second,
            [
                {"type": "DEPOSIT", "date": day, "amount": 100_000},
                {"type": "BUY", "date": day, "symbol": held_c, "quantity": 3, "price": 10},
                {"type": "BUY", "date": day, "symbol": sold, "quantity": 2, "price": 10},
                {"type": "SELL", "date": day, "symbol": sold, "quantity": 2, "price": 11},
            ],
        )
        before = await pool.fetchval("SELECT clock_timestamp()")

        ledger = await run_leader_at(pool, settings, publisher, now=now)

        assert (job_id, now.replace(minute=now.minute // 30 * 30).isoformat(), "sent") in ledger
        outcome = await fired_and_finished(pool, job_id)
        assert outcome["name"] == UpdatePortfolioPrices.name
        quotes = {
            row["symbol"]: row["updated_at"]
            for row in await pool.fetch(
                "SELECT symbol, updated_at FROM latest_quotes WHERE symbol = ANY($1::text[])",
                [held_a, held_b, held_c, sold],
            )
        }
        assert set(quotes) == {held_a, held_b, held_c}
        assert all(updated > before for updated in quotes.values())
        failed = {f["symbol"] for f in outcome["result"]["failed"]}
        assert failed.isdisjoint(quotes)
        assert outcome["result"]["requested"] >= 3


class TestDailySnapshot:
    async def test_every_portfolio_is_valued_at_the_session_close(
        self, pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher
    ) -> None:
        """After the 16:30 fire every portfolio has a snapshot of today's session, valued as
        cash plus quantity times that session's close, to the cent."""
        symbol = f"S{uuid.uuid4().hex[:5].upper()}"
        closes = {date(2026, 11, 2): 50.0, date(2026, 11, 17): 58.5, PINNED_TODAY: 61.25}
        await put_closes(pool, symbol, closes)
        portfolio = await create_portfolio(pool, owner_id=await new_owner_id(pool), name="snap")
        await add_transactions(
            pool,
            portfolio,
            [
                {"type": "DEPOSIT", "date": date(2026, 11, 2), "amount": 10_000},
                {
                    "type": "BUY",
                    "date": date(2026, 11, 2),
                    "symbol": symbol,
                    "quantity": 10,
                    "price": 50,
                    "fee": 1,
                },
            ],
        )

        ledger = await run_leader_at(pool, settings, publisher, now=SNAPSHOT_AT)

        assert ("daily-snapshot", "2026-11-18T21:30:00+00:00", "sent") in ledger
        outcome = await fired_and_finished(pool, "daily-snapshot")
        assert outcome["result"]["start"] == PINNED_TODAY.isoformat()
        assert str(portfolio) not in outcome["result"]["failed"]
        row = await pool.fetchrow(
            "SELECT total_value, cash, market_value FROM portfolio_snapshots "
            "WHERE portfolio_id = $1 AND date = $2",
            portfolio,
            PINNED_TODAY,
        )
        assert row is not None, "no snapshot of today's session"
        # 10,000 deposited, 10 at 50 plus a 1 fee spent; 10 shares at today's 61.25 close.
        assert (row["cash"], row["market_value"], row["total_value"]) == (
            Decimal("9499.000000"),
            Decimal("612.500000"),
            Decimal("10111.500000"),
        )


def series_close(symbol: str, day: date) -> Decimal:
    """The close the simulated exchange serves for `symbol` on `day`, as stored."""
    series = build_series(symbol, day)
    assert series.days[-1] == day
    return Decimal(str(round(float(series.close[-1]), 4)))


async def configure_exchange(url: str, **config: object) -> None:
    """Replace the session exchange's config (the worker's provider) over HTTP."""
    async with aiohttp.ClientSession() as http:
        response = await http.put(f"{url}/_sim/config", json=config)
        assert response.status == 200, await response.text()


async def snapshot_when(
    pool: asyncpg.Pool, portfolio: int, day: date, done: Callable[[asyncpg.Record], bool]
) -> asyncpg.Record:
    """The portfolio's snapshot of `day` once `done` holds for it (rewrites are tasks)."""
    row = None
    for _ in range(300):
        row = await pool.fetchrow(
            "SELECT total_value, cash, stale_prices FROM portfolio_snapshots "
            "WHERE portfolio_id = $1 AND date = $2",
            portfolio,
            day,
        )
        if row is not None and done(row):
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"snapshot of {day} never reached the expected state: {row}")


class TestSessionCloses:
    async def test_a_close_that_failed_is_flagged_then_rewritten_when_it_arrives(
        self, pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher, exchange: str
    ) -> None:
        """After the 16:05 and 16:30 fires the snapshot values each holding at the session's
        close, except one whose close could not be fetched: valued at its previous close and
        flagged with that close's date. A later close step stores the missing bar and the
        snapshot is rewritten at it, unflagged."""
        tag = uuid.uuid4().hex[:5].upper()
        failing, fine = f"C{tag}", f"D{tag}"
        # Tuesday the 17th: fire ids derive from job and instant, and other tests fire the 18th.
        previous, session = date(2026, 11, 16), date(2026, 11, 17)
        for symbol in (failing, fine):
            await put_closes(pool, symbol, {previous: float(series_close(symbol, previous))})
        portfolio = await create_portfolio(pool, owner_id=await new_owner_id(pool), name="c")
        await add_transactions(
            pool,
            portfolio,
            [
                {"type": "DEPOSIT", "date": date(2026, 11, 2), "amount": 10_000},
                {
                    "type": "BUY",
                    "date": date(2026, 11, 2),
                    "symbol": failing,
                    "quantity": 3,
                    "price": 10,
                },
                {
                    "type": "BUY",
                    "date": date(2026, 11, 2),
                    "symbol": fine,
                    "quantity": 7,
                    "price": 10,
                },
            ],
        )
        cash = Decimal(10_000 - 30 - 70)
        try:
            # The exchange's session of the 18th has closed; the failing symbol is not found.
            await configure_exchange(
                exchange,
                today=session.isoformat(),
                faults=["empty_result"],
                fault_rate=1.0,
                fault_symbols=[failing],
            )
            await run_leader_at(pool, settings, publisher, now=SNAPSHOT_AT - timedelta(days=1))
            closes = await fired_and_finished(pool, "session-closes")
            assert closes["result"]["session"] == session.isoformat()
            assert [f["symbol"] for f in closes["result"]["failed"]] == [failing]
            stored = await pool.fetchval(
                "SELECT close FROM daily_prices WHERE symbol = $1 AND date = $2", fine, session
            )
            assert stored == series_close(fine, session)
            flagged = await snapshot_when(
                pool,
                portfolio,
                session,
                lambda row: row["stale_prices"] == {failing: previous.isoformat()},
            )
            assert flagged["total_value"] == cash + 3 * series_close(
                failing, previous
            ) + 7 * series_close(fine, session)

            # A later close step (16:10 on the 19th) finds the 17th's bar of the failing symbol.
            await configure_exchange(exchange, today=session.isoformat())
            later = SNAPSHOT_AT + timedelta(days=1) - timedelta(minutes=25)
            await run_leader_at(pool, settings, publisher, now=later)
            rewritten = await snapshot_when(
                pool, portfolio, session, lambda row: row["stale_prices"] == {}
            )
            assert rewritten["total_value"] == cash + 3 * series_close(
                failing, session
            ) + 7 * series_close(fine, session)
        finally:
            await configure_exchange(exchange)


class TestWeeklyCleanup:
    async def test_old_finished_tasks_are_pruned_and_recent_ones_kept(
        self, pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher
    ) -> None:
        """After Sunday's fire, a task finished a year before the worker's clock is gone and
        one finished yesterday is still there."""
        old, recent = str(uuid.uuid4()), str(uuid.uuid4())
        for task_id, age in ((old, timedelta(days=400)), (recent, timedelta(days=1))):
            finished = PINNED_START - age
            await pool.execute(
                "INSERT INTO tasks (id, name, params_hash, state, submitted_at, finished_at) "
                "VALUES ($1, 'demo_fetch', $1, 'SUCCESS', $2, $2)",
                task_id,
                finished,
            )

        ledger = await run_leader_at(pool, settings, publisher, now=CLEANUP_AT)

        assert ("weekly-cleanup", "2026-11-22T09:00:00+00:00", "sent") in ledger
        outcome = await fired_and_finished(pool, "weekly-cleanup")
        assert outcome["result"]["tasks"] >= 1
        left = await pool.fetch("SELECT id FROM tasks WHERE id = ANY($1::text[])", [old, recent])
        assert [row["id"] for row in left] == [recent]
