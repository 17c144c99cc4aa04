"""A simulated trading week, end to end: the real scheduler, worker, API and simulated
exchange run on one fast clock from Monday 2026-10-26 08:00 to Monday 2026-11-02 10:00 New
York time, and nobody presses a button.

The week holds the switch from EDT to EST (Sunday 1 November). No real week also holds a
holiday and an early close, so the override table supplies them: Wednesday the 28th is a
closure and Friday the 30th closes at 13:00, and the exchange is told the same. Every
check is an outcome a user sees: quotes newer than each market-hours fire, each session's
close stored before its snapshot, snapshots equal to the portfolio valued at that close,
and a week's performance equal to the one computed from the simulated series directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal

import aiohttp
import asyncpg
import pytest
import redis

from service.core.database import create_pool
from service.core.migrations import migrate
from service.core.settings import Settings
from service.core.trading_calendar import EXCHANGE_TZ, TradingCalendar
from service.core.users import create_user
from service.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from service.scheduler.jobs import jobs_for
from service.scheduler.plan import fire_times
from tests.api_client import Api
from tests.conftest import start_worker
from tests.processes import ManagedProcess, wait_until_http_ok
from workers.market_data.simulated_exchange.series import build_series, last_trade

pytestmark = pytest.mark.timeout(420)

# In UTC: arithmetic on datetimes sharing a ZoneInfo is wall-clock arithmetic, and this
# week's wall clock repeats an hour.
START = datetime(2026, 10, 26, 8, 0, tzinfo=EXCHANGE_TZ).astimezone(UTC)  # Monday, EDT
END = datetime(2026, 11, 2, 10, 0, tzinfo=EXCHANGE_TZ).astimezone(UTC)  # next Monday, EST
CLOSURE = date(2026, 10, 28)
EARLY_CLOSE = (date(2026, 10, 30), dt_time(13, 0))
CALENDAR = TradingCalendar(closures=[CLOSURE], early_closes=dict([EARLY_CLOSE]))
SECONDS_PER_SIMULATED_HOUR = 0.6
SPEED = 3600 / SECONDS_PER_SIMULATED_HOUR
STARTUP_SECONDS = 25.0
REDIS_DB = 13  # the week's broker, results and leases; emptied before the run
FUNDED_ON = date(2026, 10, 1)
CASH = Decimal(50_000)
PORTFOLIOS = {
    "alice": {"AAPL": 12, "MSFT": 5, "NVDA": 8},
    "bob": {"JPM": 20, "V": 3, "AAPL": 4},
}
BUY_PRICE = Decimal(100)
PRICE_TASK = "update_portfolio_prices"


def series_close(symbol: str, day: date) -> Decimal:
    """The close the exchange serves for `symbol` on session `day`, as stored."""
    series = build_series(symbol, day, CALENDAR)
    assert series.days[-1] == day
    return Decimal(str(round(float(series.close[-1]), 4)))


def value_on(holdings: dict[str, int], day: date) -> Decimal:
    """A portfolio's value at `day`'s closes, straight from the simulated series."""
    spent = sum((BUY_PRICE * qty for qty in holdings.values()), Decimal(0))
    return CASH - spent + sum((qty * series_close(s, day) for s, qty in holdings.items()))


@dataclass
class Week:
    """The week's database, clock, processes and API keys."""

    database_url: str
    env: dict[str, str]
    anchor: float
    api_url: str
    keys: dict[str, str]
    portfolio_ids: dict[str, int]
    processes: list[ManagedProcess] = field(default_factory=list)

    def now(self) -> datetime:
        """The week's simulated instant."""
        return START + timedelta(seconds=(time.time() - self.anchor) * SPEED)

    def real_seconds_until(self, instant: datetime) -> float:
        """Real seconds until the week's clock reads `instant`."""
        return self.anchor + (instant - START).total_seconds() / SPEED - time.time()


@dataclass
class QuoteLog:
    """Every change of the held symbols' stored quotes, as observed (database time)."""

    observations: list[tuple[datetime, dict[str, tuple[datetime, Decimal]]]] = field(
        default_factory=list
    )
    polled_at: datetime | None = None  # the latest poll, changed or not

    def first_after(self, instant: datetime) -> dict[str, tuple[datetime, Decimal]]:
        """The quotes as the first poll at or after `instant` (database time) saw them."""
        for observed_at, quotes in self.observations:
            if observed_at >= instant:
                return quotes
        # Unchanged since the last change: a later poll still saw the last observation.
        if self.observations and self.polled_at is not None and self.polled_at >= instant:
            return self.observations[-1][1]
        raise AssertionError(f"no quotes observed after {instant}")


async def _create_database(postgres: EmbeddedPostgres) -> str:
    name = f"week_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = postgres.url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url)
    return url


async def _seed(database_url: str) -> tuple[dict[str, str], dict[str, int]]:
    """Two users with a portfolio each, funded and bought before the week; the overrides."""
    keys: dict[str, str] = {}
    ids: dict[str, int] = {}
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO market_closures (day, reason, closes_at) VALUES "
            "($1, 'simulated holiday', NULL), ($2, 'simulated early close', $3)",
            CLOSURE,
            EARLY_CLOSE[0],
            EARLY_CLOSE[1],
        )
        for owner, holdings in PORTFOLIOS.items():
            issued = await create_user(connection, email=f"{owner}@week.test")
            keys[owner] = issued.api_key
            portfolio = await connection.fetchval(
                "INSERT INTO portfolios (owner_id, name) VALUES ($1, 'main') RETURNING id",
                issued.user_id,
            )
            ids[owner] = portfolio
            await connection.execute(
                "INSERT INTO transactions (portfolio_id, type, date, amount) "
                "VALUES ($1, 'DEPOSIT', $2, $3)",
                portfolio,
                FUNDED_ON,
                CASH,
            )
            for symbol, quantity in holdings.items():
                await connection.execute(
                    "INSERT INTO assets (symbol) VALUES ($1) ON CONFLICT DO NOTHING", symbol
                )
                await connection.execute(
                    "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price)"
                    " VALUES ($1, 'BUY', $2, $3, $4, $5)",
                    portfolio,
                    FUNDED_ON,
                    symbol,
                    quantity,
                    BUY_PRICE,
                )
        # The scheduler was deployed at the start of the run: nothing earlier is caught up.
        await connection.execute(
            "INSERT INTO scheduler_jobs (job_id, first_seen_at) SELECT unnest($1::text[]), $2",
            [job.id for job in jobs_for("market")],
            START,
        )
    finally:
        await connection.close()
    return keys, ids


@pytest.fixture(scope="module")
def week(
    postgres: EmbeddedPostgres,
    redis_server: EmbeddedRedis,
    base_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Week]:
    """The whole system on the week's own database, Redis database and fast clock."""
    logs = tmp_path_factory.mktemp("week")
    flush = redis.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}")
    flush.flushdb()
    flush.close()
    database_url = asyncio.run(_create_database(postgres))
    keys, ids = asyncio.run(_seed(database_url))
    exchange_port, api_port = free_port(), free_port()
    anchor = float(int(time.time() + STARTUP_SECONDS))
    env = {
        **base_env,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url.rsplit("/", 1)[0] + f"/{REDIS_DB}",
        "CLOCK_START": START.isoformat(),
        "CLOCK_ANCHOR": str(anchor),
        "CLOCK_SPEED": str(SPEED),
        "YAHOO_BASE_URL": f"http://127.0.0.1:{exchange_port}",
        "SIM_EXCHANGE_PORT": str(exchange_port),
        "API_PORT": str(api_port),
        "SCHEDULER_SCHEDULE": "market",
        "SCHEDULER_HEARTBEAT_SECONDS": "0.5",
        "SCHEDULER_CATCHUP_SECONDS": "1",
    }
    processes: list[ManagedProcess] = []

    def spawn(name: str, *args: str) -> ManagedProcess:
        process = ManagedProcess([sys.executable, *args], env=env, log_path=logs / f"{name}.log")
        process.start()
        processes.append(process)
        return process

    try:
        exchange = spawn(
            "exchange", "-m", "workers.market_data.simulated_exchange", "--port", str(exchange_port)
        )
        api = spawn("api", "-m", "service.api")
        wait_until_http_ok(f"http://127.0.0.1:{exchange_port}/health", exchange)
        asyncio.run(_configure_exchange(f"http://127.0.0.1:{exchange_port}"))
        processes.append(start_worker(env, log_path=logs / "worker.log", name="week"))
        wait_until_http_ok(f"http://127.0.0.1:{api_port}/health", api)
        spawn("scheduler", "-m", "service.scheduler")
        assert time.time() < anchor, "the week's processes took longer than STARTUP_SECONDS"
        yield Week(
            database_url=database_url,
            env=env,
            anchor=anchor,
            api_url=f"http://127.0.0.1:{api_port}",
            keys=keys,
            portfolio_ids=ids,
            processes=processes,
        )
    finally:
        for process in reversed(processes):
            process.stop()


async def _configure_exchange(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.put(
            f"{url}/_sim/config",
            json={
                "closures": [CLOSURE.isoformat()],
                "early_closes": {EARLY_CLOSE[0].isoformat(): EARLY_CLOSE[1].isoformat()},
            },
        )
        assert response.status == 200, await response.text()


async def _watch_quotes(pool: asyncpg.Pool, symbols: list[str], log: QuoteLog) -> None:
    last: dict[str, tuple[datetime, Decimal]] = {}
    while True:
        rows = await pool.fetch(
            "SELECT clock_timestamp() AS at, symbol, market_time, price FROM latest_quotes "
            "WHERE symbol = ANY($1::text[])",
            symbols,
        )
        quotes = {row["symbol"]: (row["market_time"], row["price"]) for row in rows}
        if rows and quotes != last:
            log.observations.append((rows[0]["at"], quotes))
            last = quotes
        if rows:
            log.polled_at = rows[0]["at"]
        await asyncio.sleep(0.03)


@dataclass
class Outcome:
    """What the run left behind."""

    fires: list[asyncpg.Record]
    tasks: dict[str, asyncpg.Record]
    quotes: QuoteLog


@pytest.fixture(scope="module")
async def outcome(week: Week) -> AsyncIterator[Outcome]:
    """Run the week to its end while watching the quotes; then stop the scheduler and let
    the last tasks finish."""
    pool = await create_pool(Settings.from_env(week.env), application_name="week-test")
    held = sorted({s for holdings in PORTFOLIOS.values() for s in holdings})
    quotes = QuoteLog()
    watcher = asyncio.ensure_future(_watch_quotes(pool, held, quotes))
    try:
        wait = week.real_seconds_until(END + timedelta(minutes=20))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for process in week.processes:
                process.raise_if_exited()
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        week.processes[-1].stop()  # the scheduler: no fire after the run's end
        for _ in range(200):
            unfinished = await pool.fetchval(
                "SELECT count(*) FROM tasks WHERE state NOT IN ('SUCCESS', 'FAILURE', 'REVOKED')"
            )
            if unfinished == 0:
                break
            await asyncio.sleep(0.1)
        fires = await pool.fetch(
            "SELECT job_id, scheduled_for, state, task_id::text AS task_id FROM schedule_fires "
            "ORDER BY scheduled_for, job_id"
        )
        tasks = {
            row["id"]: row
            for row in await pool.fetch(
                "SELECT id, name, state, result, error, finished_at FROM tasks"
            )
        }
        # The tests read the quotes as they stood when each task finished: wait for a poll
        # after the last finish (a quote written just before it may be the last change).
        last_finish = max(t["finished_at"] for t in tasks.values() if t["finished_at"])
        for _ in range(100):
            if quotes.polled_at is not None and quotes.polled_at >= last_finish:
                break
            await asyncio.sleep(0.05)
        yield Outcome(fires=fires, tasks=tasks, quotes=quotes)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await pool.close()


async def test_every_implied_fire_happened_once(outcome: Outcome) -> None:
    """Every fire the calendar implies between the start and the end happened exactly once
    (sent, or suppressed as the duplicate of a coinciding fire of the same task) and ended
    SUCCESS; there were no others, across the holiday, the early close and the DST switch."""
    expected = {
        (job.id, instant)
        for job in jobs_for("market")
        for instant in fire_times(job, CALENDAR, start=START, end=END + timedelta(microseconds=1))
    }
    # The scheduler is stopped a little after the end; what it fired after that is not
    # part of the run.
    happened = [(row["job_id"], row["scheduled_for"]) for row in outcome.fires]
    assert len(happened) == len(set(happened))
    assert {fire for fire in happened if fire[1] <= END} == expected
    assert {row["state"] for row in outcome.fires} <= {"sent", "duplicate"}
    for row in outcome.fires:
        if row["state"] == "sent":
            task = outcome.tasks.get(row["task_id"])
            assert task is not None, f"{row['job_id']} at {row['scheduled_for']} never ran"
            assert task["state"] == "SUCCESS", (row["job_id"], task["error"])
    # Spot checks of the calendar's awkward days, in UTC.
    snapshots = sorted(i for job, i in happened if job == "daily-snapshot")
    assert [i.astimezone(UTC).isoformat() for i in snapshots] == [
        "2026-10-26T20:30:00+00:00",
        "2026-10-27T20:30:00+00:00",
        "2026-10-29T20:30:00+00:00",
        "2026-10-30T17:30:00+00:00",  # the early close: 13:30 EDT
    ]
    cleanup = [i for job, i in happened if job == "weekly-cleanup"]
    assert [i.astimezone(UTC).isoformat() for i in cleanup] == ["2026-11-01T09:00:00+00:00"]


def _in_market_hours(instant: datetime) -> bool:
    day = instant.astimezone(EXCHANGE_TZ).date()
    return CALENDAR.open_session(instant) is not None or CALENDAR.close_at(day) == instant


async def test_quotes_are_newer_than_every_market_hours_fire(outcome: Outcome) -> None:
    """After each price fire while the market is open, every held symbol's stored quote
    traded after the fire, at the price the exchange showed at that moment."""
    checked = 0
    held = sorted({s for holdings in PORTFOLIOS.values() for s in holdings})
    for row in outcome.fires:
        task = outcome.tasks.get(row["task_id"])
        if row["state"] != "sent" or task is None or task["name"] != PRICE_TASK:
            continue
        result = task["result"]
        assert result["failed"] == []
        assert result["updated"] == result["requested"]
        fired = row["scheduled_for"]
        if fired > END or not _in_market_hours(fired):
            continue
        quotes = outcome.quotes.first_after(task["finished_at"])
        assert set(quotes) == set(held)
        for symbol, (market_time, price) in quotes.items():
            assert market_time >= fired, (symbol, market_time, fired)
            expected = last_trade(symbol, market_time, CALENDAR).price
            assert price == Decimal(str(expected)), (symbol, market_time)
        checked += 1
    # Sent fires inside a session or at its close (coinciding hourly and half-hourly fires
    # are one): 10:00-16:00 hourly and 09:30-15:30 half-hourly on Mon, Tue and Thu (14 a
    # day); 10:00-13:00 and 09:30-12:30 on the early Friday (8); 09:30 and 10:00 on the
    # last Monday (2).
    assert checked == 14 * 3 + 8 + 2


async def test_each_close_is_stored_before_its_snapshot_which_values_at_it(
    week: Week, outcome: Outcome
) -> None:
    """Each completed session's bar is stored for every held symbol (equal to what the
    exchange served) before that session's snapshot, and the snapshot is cash plus each
    position at that close, flagged stale nowhere; the closed day has no snapshot."""
    sessions = [date(2026, 10, 26), date(2026, 10, 27), date(2026, 10, 29), date(2026, 10, 30)]
    pool = await create_pool(Settings.from_env(week.env), application_name="week-test")
    try:
        connection = pool
        for owner, holdings in PORTFOLIOS.items():
            rows = await connection.fetch(
                "SELECT date, total_value, stale_prices, computed_at FROM portfolio_snapshots "
                "WHERE portfolio_id = $1 ORDER BY date",
                week.portfolio_ids[owner],
            )
            assert [r["date"] for r in rows] == sessions
            for row in rows:
                assert row["stale_prices"] == {}
                assert row["total_value"] == value_on(holdings, row["date"]), (owner, row["date"])
                for symbol in holdings:
                    bar = await connection.fetchrow(
                        "SELECT close, updated_at FROM daily_prices "
                        "WHERE symbol = $1 AND date = $2",
                        symbol,
                        row["date"],
                    )
                    assert bar is not None
                    assert bar["close"] == series_close(symbol, row["date"])
                    assert bar["updated_at"] <= row["computed_at"], (symbol, row["date"])
    finally:
        await pool.close()


async def test_holdings_show_the_latest_quotes_and_the_weeks_performance_is_right(
    week: Week, outcome: Outcome
) -> None:
    """At the end a user's holdings are valued at quotes from Monday's last fire, none
    stale; and the week's performance, asked for through the API, equals the return
    computed straight from the simulated closes."""
    owner = "alice"
    portfolio = week.portfolio_ids[owner]
    async with aiohttp.ClientSession() as http:
        api = Api(http, week.api_url, week.keys[owner])
        status, holdings, _ = await api.request("GET", f"/api/v1/portfolios/{portfolio}/holdings")
        assert status == 200, holdings
        assert holdings["stale_prices"] == []
        for row in holdings["holdings"]:
            assert row["price_source"] == "quote", row
            assert datetime.fromisoformat(row["price_time"]) >= END, row
        status, submitted = await api.submit(
            "portfolio-performance",
            {"portfolio_id": portfolio, "start": "2026-10-26", "end": "2026-10-30"},
        )
        assert status in (200, 202), submitted
        finished = await api.wait_finished(submitted["task_id"], within=60)
        assert finished["state"] == "SUCCESS", finished
        status, performance, _ = await api.request(
            "GET", f"/api/v1/portfolios/{portfolio}/performance"
        )
    assert status == 200, performance
    first, last = date(2026, 10, 26), date(2026, 10, 30)
    expected = float(value_on(PORTFOLIOS[owner], last) / value_on(PORTFOLIOS[owner], first) - 1)
    assert (performance["start"], performance["end"]) == (first.isoformat(), last.isoformat())
    assert performance["metrics"]["total_return"] == pytest.approx(expected, rel=1e-9)
