"""Every scheduled job, sent by a real leader through the broker to a real worker, changes
what users see: quotes of every held symbol, the day's snapshot of every portfolio, and the
weekly pruning. "The fire was sent" is not the assertion; the database is. And what the
scheduler sent is visible: to an admin over the API and the CLI, and in `schedule list`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.core.contracts import UpdatePortfolioPrices
from service.core.publisher import TaskPublisher
from service.core.settings import Settings
from service.core.users import IssuedKey
from service.scheduler.jobs import MARKET_JOBS
from service.scheduler.replica import create_publisher
from tests.api_client import Api
from tests.conftest import PINNED_START, PINNED_TODAY
from tests.portfolio_data import add_transactions, create_portfolio, new_owner_id, put_closes
from tests.scheduling import run_leader_at
from tests.test_cli import findash
from workers.market_data.simulated_exchange.series import build_series

pytestmark = [pytest.mark.usefixtures("worker"), pytest.mark.timeout(90)]

# The session's pinned day (Wednesday 2026-11-18, EST = UTC-5) at chosen New York times.
HOURLY_AT = datetime(2026, 11, 18, 19, 5, tzinfo=UTC)  # 14:05: the 14:00 hourly fire is due
EXTENDED_AT = datetime(2026, 11, 18, 12, 35, tzinfo=UTC)  # 07:35: the 07:30 extended fire
SNAPSHOT_AT = datetime(2026, 11, 18, 21, 35, tzinfo=UTC)  # 16:35: the 16:30 snapshot fire
CLEANUP_AT = datetime(2026, 11, 22, 9, 5, tzinfo=UTC)  # Sunday 04:05: the weekly cleanup
# 13:05: the 13:00 hourly fire is sent; the coinciding extended fire is its duplicate.
VISIBLE_AT = datetime(2026, 11, 18, 18, 5, tzinfo=UTC)
NewUser = Callable[..., Awaitable[IssuedKey]]


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
        assert set(quotes) == {held_a, held_b, held_c}, outcome["result"]
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
            # Other tests' portfolios hold unknown symbols too: only ours are looked at.
            failed = {f["symbol"] for f in closes["result"]["failed"]}
            assert failing in failed
            assert fine not in failed
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


@pytest.fixture(scope="module")
async def fired(pool: asyncpg.Pool, settings: Settings, publisher: TaskPublisher) -> dict[str, Any]:
    """The 13:00 hourly fire of a portfolio holding a known and an unknown symbol, sent
    by a real leader and finished by the worker: its task id, result and symbols."""
    tag = uuid.uuid4().hex[:4].upper()
    known, unknown = f"V{tag}K", f"ZZ{tag}U"  # the exchange knows no symbol "ZZ…"
    portfolio = await create_portfolio(pool, owner_id=await new_owner_id(pool), name="seen")
    day = date(2026, 11, 2)
    await add_transactions(
        pool,
        portfolio,
        [
            {"type": "DEPOSIT", "date": day, "amount": 10_000},
            {"type": "BUY", "date": day, "symbol": known, "quantity": 1, "price": 10},
            {"type": "BUY", "date": day, "symbol": unknown, "quantity": 1, "price": 10},
        ],
    )
    ledger = await run_leader_at(pool, settings, publisher, now=VISIBLE_AT)
    assert ("extended-hours-update", "2026-11-18T18:00:00+00:00", "duplicate") in ledger
    outcome = await fired_and_finished(pool, "hourly-price-update")
    task_id = await pool.fetchval(
        "SELECT task_id::text FROM schedule_fires WHERE job_id = 'hourly-price-update'"
    )
    assert await pool.fetchval("SELECT owner_id FROM tasks WHERE id = $1", task_id) is None
    return {"task_id": task_id, "result": outcome["result"], "known": known, "unknown": unknown}


class TestScheduledWorkIsVisible:
    async def test_admin_reads_it_and_others_get_404(
        self,
        fired: dict[str, Any],
        api_url: str,
        http: aiohttp.ClientSession,
        new_user: NewUser,
    ) -> None:
        """An admin reads the scheduler-sent task's state and result by id and by its event
        stream; a plain key gets 404 for it, as for any task not its own."""
        task_id = fired["task_id"]
        admin = Api(http, api_url, (await new_user(admin=True)).api_key)
        status, task = await admin.status_of(task_id)
        assert status == 200, task
        assert (task["state"], task["result"]) == ("SUCCESS", fired["result"])
        assert fired["unknown"] in {f["symbol"] for f in task["result"]["failed"]}
        assert (await admin.wait_finished(task_id))["result"] == fired["result"]
        plain = Api(http, api_url, (await new_user()).api_key)
        for method, path in (
            ("GET", f"/api/v1/tasks/status/{task_id}"),
            ("GET", f"/api/v1/tasks/{task_id}/events"),
            ("DELETE", f"/api/v1/tasks/cancel/{task_id}"),
        ):
            assert (await plain.request(method, path))[0] == 404, path

    async def test_system_listing_is_for_admins(
        self,
        fired: dict[str, Any],
        api_url: str,
        http: aiohttp.ClientSession,
        new_user: NewUser,
        pool: asyncpg.Pool,
    ) -> None:
        """`?owner=system` lists the scheduler's tasks (and no user's) to an admin, page by
        page; a plain key gets a 403 naming `owner`; `owner` with `user_id` is a 422 and an
        owner other than `system` a 400, both naming `owner`."""
        admin = Api(http, api_url, (await new_user(admin=True)).api_key)
        _, own = await admin.submit("asset-info", {"symbol": "AAPL"})
        listed: list[str] = []
        cursor = ""
        for _ in range(50):
            status, page, _ = await admin.request(
                "GET", f"/api/v1/tasks?owner=system&limit=2{cursor}"
            )
            assert status == 200, page
            assert len(page["tasks"]) <= 2
            listed += [t["task_id"] for t in page["tasks"]]
            if page["next_cursor"] is None:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert fired["task_id"] in listed
        assert own["task_id"] not in listed
        owners = await pool.fetch("SELECT owner_id FROM tasks WHERE id = ANY($1::text[])", listed)
        assert len(owners) == len(listed)
        assert {row["owner_id"] for row in owners} == {None}
        plain = Api(http, api_url, (await new_user()).api_key)
        status, problem, _ = await plain.request("GET", "/api/v1/tasks?owner=system")
        assert status == 403
        assert [e["field"] for e in problem["errors"]] == ["owner"]
        for query, expected in (("owner=system&user_id=1", 422), ("owner=everyone", 400)):
            status, problem, _ = await admin.request("GET", f"/api/v1/tasks?{query}")
            assert status == expected, (query, problem)
            assert [e["field"] for e in problem["errors"]] == ["owner"], problem
        await admin.wait_finished(own["task_id"])

    async def test_cli_status_and_history_for_admin(
        self, fired: dict[str, Any], base_env: dict[str, str], api_url: str, new_user: NewUser
    ) -> None:
        """`findash status ID` (and `--wait`) prints an admin the scheduler-sent task and
        exits 0; `history --owner system` lists it; a plain key's `status` exits 2 with 404."""
        admin_key, plain_key = (await new_user(admin=True)).api_key, (await new_user()).api_key
        env = {**base_env, "FINDASH_API_URL": api_url, "FINDASH_API_KEY": admin_key}
        task_id = fired["task_id"]
        for extra in ((), ("--wait",)):
            done = await cli("--json", "status", task_id, *extra, env=env)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["result"] == fired["result"]
        history = await cli("--json", "history", "--owner", "system", "--limit", "200", env=env)
        assert history.returncode == 0, history.stderr
        assert task_id in [t["task_id"] for t in json.loads(history.stdout)["tasks"]]
        refused = await cli("status", task_id, env={**env, "FINDASH_API_KEY": plain_key})
        assert refused.returncode == 2
        assert "404" in refused.stderr

    async def test_schedule_list_shows_the_outcome(
        self, fired: dict[str, Any], base_env: dict[str, str]
    ) -> None:
        """`schedule list` shows the fire's task with its counts and failures, in JSON and in
        the terminal; the coinciding duplicate fire shows the same outcome."""
        result = fired["result"]
        expected = {
            "requested": result["requested"],
            "updated": result["updated"],
            "failed": len(result["failed"]),
        }
        done = await cli("schedule", "list", "--json", "--last", "1", env=base_env)
        assert done.returncode == 0, done.stderr
        jobs = {job["job_id"]: job for job in json.loads(done.stdout)["jobs"]}
        (hourly,) = jobs["hourly-price-update"]["last_fires"]
        (extended,) = jobs["extended-hours-update"]["last_fires"]
        assert (hourly["task_id"], hourly["task_state"]) == (fired["task_id"], "SUCCESS")
        assert {k: hourly["counts"][k] for k in expected} == expected
        failures = {f["item"]: f["reason"] for f in hourly["failures"]}
        assert fired["unknown"] in failures
        assert failures[fired["unknown"]]
        assert fired["known"] not in failures
        assert (extended["state"], extended["duplicate_of"]) == ("duplicate", fired["task_id"])
        assert (extended["task_state"], extended["counts"]) == ("SUCCESS", hourly["counts"])
        text = await cli("schedule", "list", "--last", "1", env=base_env)
        assert text.returncode == 0, text.stderr
        assert fired["task_id"] in text.stdout
        assert f"requested {expected['requested']} · updated {expected['updated']}" in text.stdout
        assert f"failed {expected['failed']}" in text.stdout
        assert f"✗ {result['failed'][0]['symbol']}:" in text.stdout


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `findash` as a user would, off the event loop."""
    return await asyncio.to_thread(findash, *args, env=env)
