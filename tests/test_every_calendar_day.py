"""Every date-dependent decision on the awkward days of the calendar: weekends, holidays,
the Monday after Good Friday, an early close, both DST switches and New Year's Day.

For each day the clock is pinned to noon in New York and four outcomes are checked against
values written out by hand (not recomputed by the code under test): the incremental refresh
(real Postgres and the simulated exchange's served-bar ledger), the market schedule, the
default snapshot's valuation date and the performance window.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from service.core.clock import fixed_clock
from service.core.contracts import CreatePortfolioSnapshot, performance_window
from service.core.trading_calendar import EXCHANGE_TZ, NYSE
from service.scheduler.jobs import jobs_for
from service.scheduler.plan import due_fires, fire_times, next_fires
from tests.market_sim import Sim, failover, market_settings
from workers.market_data.fetch import ChunkFetcher
from workers.market_data.plan import requested_window

D = date.fromisoformat
JOBS = {job.id: job for job in jobs_for("market")}

pytestmark = pytest.mark.usefixtures("clean_exchange")


def Z(text: str) -> datetime:  # noqa: N802 - reads like a literal
    """A UTC instant written as `YYYY-MM-DDTHH:MM`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Day:
    """One awkward day and what every date-dependent decision must make of it."""

    day: date
    # Bars the second 1y fetch downloads: sessions from the last stored bar minus 5 days.
    refresh_bars: int
    # Per job on the local day: (fire count, first UTC fire, last UTC fire).
    fires: dict[str, tuple[int, datetime, datetime]]
    # What is due at noon New York time (job id, UTC instant), in claim order.
    due_at_noon: list[tuple[str, datetime]]
    next_snapshot: datetime
    # The session a snapshot without a date values late in the day (after any close)…
    valuation_date: date
    performance_30d: tuple[date, date]
    # …and at noon, while a session runs (the previous one); None: the same as late.
    noon_valuation_date: date | None = None


DAYS = [
    pytest.param(
        Day(
            day=D("2026-11-28"),
            refresh_bars=4,  # Nov 23, 24, 25, 27 (26 is Thanksgiving)
            fires={},
            due_at_noon=[],
            next_snapshot=Z("2026-11-30T21:30"),
            valuation_date=D("2026-11-27"),
            performance_30d=(D("2026-10-28"), D("2026-11-27")),
        ),
        id="saturday",
    ),
    pytest.param(
        Day(
            day=D("2026-11-29"),
            refresh_bars=4,
            fires={"weekly-cleanup": (1, Z("2026-11-29T09:00"), Z("2026-11-29T09:00"))},
            due_at_noon=[("weekly-cleanup", Z("2026-11-29T09:00"))],
            next_snapshot=Z("2026-11-30T21:30"),
            valuation_date=D("2026-11-27"),
            performance_30d=(D("2026-10-28"), D("2026-11-27")),
        ),
        id="sunday",
    ),
    pytest.param(
        Day(
            day=D("2026-01-19"),
            refresh_bars=5,  # Jan 12-16
            fires={},
            due_at_noon=[],
            next_snapshot=Z("2026-01-20T21:30"),
            valuation_date=D("2026-01-16"),
            performance_30d=(D("2025-12-17"), D("2026-01-16")),
        ),
        id="mlk-day-holiday-monday",
    ),
    # The Monday after a holiday: Good Friday closed the Friday before, so the last session
    # before this one is Thursday, and the 30-day window starts on a Saturday.
    pytest.param(
        Day(
            day=D("2026-04-06"),
            refresh_bars=3,  # Apr 1, 2, 6
            fires={
                "hourly-price-update": (8, Z("2026-04-06T13:00"), Z("2026-04-06T20:00")),
                "session-closes": (1, Z("2026-04-06T20:05"), Z("2026-04-06T20:05")),
                "daily-snapshot": (1, Z("2026-04-06T20:30"), Z("2026-04-06T20:30")),
                "extended-hours-update": (29, Z("2026-04-06T10:00"), Z("2026-04-07T00:00")),
            },
            due_at_noon=[
                ("hourly-price-update", Z("2026-04-06T16:00")),
                ("extended-hours-update", Z("2026-04-06T16:00")),
            ],
            next_snapshot=Z("2026-04-06T20:30"),
            valuation_date=D("2026-04-06"),
            performance_30d=(D("2026-03-09"), D("2026-04-06")),
            noon_valuation_date=D("2026-04-02"),
        ),
        id="monday-after-good-friday",
    ),
    pytest.param(
        Day(
            day=D("2026-04-03"),
            refresh_bars=4,  # Mar 30, 31, Apr 1, 2
            fires={},
            due_at_noon=[],
            next_snapshot=Z("2026-04-06T20:30"),
            valuation_date=D("2026-04-02"),
            performance_30d=(D("2026-03-03"), D("2026-04-02")),
        ),
        id="good-friday",
    ),
    pytest.param(
        Day(
            day=D("2026-11-27"),
            refresh_bars=4,  # Nov 23, 24, 25, 27
            fires={
                "hourly-price-update": (5, Z("2026-11-27T14:00"), Z("2026-11-27T18:00")),
                "session-closes": (1, Z("2026-11-27T18:05"), Z("2026-11-27T18:05")),
                "daily-snapshot": (1, Z("2026-11-27T18:30"), Z("2026-11-27T18:30")),
                "extended-hours-update": (23, Z("2026-11-27T11:00"), Z("2026-11-27T22:00")),
            },
            due_at_noon=[
                ("hourly-price-update", Z("2026-11-27T17:00")),
                ("extended-hours-update", Z("2026-11-27T17:00")),
            ],
            next_snapshot=Z("2026-11-27T18:30"),
            valuation_date=D("2026-11-27"),
            performance_30d=(D("2026-10-28"), D("2026-11-27")),
            noon_valuation_date=D("2026-11-25"),
        ),
        id="day-after-thanksgiving-early-close",
    ),
    pytest.param(
        Day(
            day=D("2026-03-08"),
            refresh_bars=5,  # Mar 2-6
            fires={"weekly-cleanup": (1, Z("2026-03-08T08:00"), Z("2026-03-08T08:00"))},
            due_at_noon=[("weekly-cleanup", Z("2026-03-08T08:00"))],
            next_snapshot=Z("2026-03-09T20:30"),  # 16:30 EDT
            valuation_date=D("2026-03-06"),
            performance_30d=(D("2026-02-04"), D("2026-03-06")),
        ),
        id="dst-starts",
    ),
    pytest.param(
        Day(
            day=D("2026-11-01"),
            refresh_bars=5,  # Oct 26-30
            fires={"weekly-cleanup": (1, Z("2026-11-01T09:00"), Z("2026-11-01T09:00"))},
            due_at_noon=[("weekly-cleanup", Z("2026-11-01T09:00"))],
            next_snapshot=Z("2026-11-02T21:30"),  # 16:30 EST
            valuation_date=D("2026-10-30"),
            performance_30d=(D("2026-09-30"), D("2026-10-30")),
        ),
        id="dst-ends",
    ),
    pytest.param(
        Day(
            day=D("2026-01-01"),
            refresh_bars=4,  # Dec 26, 29, 30, 31 (across the year boundary)
            fires={},
            due_at_noon=[],
            next_snapshot=Z("2026-01-02T21:30"),
            valuation_date=D("2025-12-31"),
            performance_30d=(D("2025-12-01"), D("2025-12-31")),
        ),
        id="new-years-day",
    ),
]


def noon(day: date) -> datetime:
    """Noon in New York on `day`."""
    return datetime.combine(day, time(12), tzinfo=EXCHANGE_TZ)


@pytest.mark.parametrize("case", DAYS)
class TestEveryCalendarDay:
    async def test_refresh_downloads_only_the_overlap(
        self,
        case: Day,
        base_env: dict[str, str],
        pool: asyncpg.Pool,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """A second 1y fetch on the day downloads only the sessions from the last stored bar
        minus the overlap, however the year-ago start falls on the calendar."""
        clock = fixed_clock(noon(case.day))
        sim.configure(today=case.day)
        settings = market_settings(base_env, sim.url, MARKET_DATA_RETRY_BUDGET_SECONDS="0.5")
        fetcher = ChunkFetcher(
            pool=pool,
            failover=failover(settings, session=http, redis=redis_client),
            overlap_days=5,
            clock=clock,
        )
        symbol = f"DAY{uuid.uuid4().hex[:8].upper()}"
        wanted = requested_window(period="1y", start=None, end=None, today=case.day)
        first = await fetcher.run([symbol], wanted)
        served = sim.exchange.bars_served[symbol]
        second = await fetcher.run([symbol], wanted)
        assert first.failed == second.failed == []
        assert served > 240
        assert sim.exchange.bars_served[symbol] - served == case.refresh_bars

    def test_market_schedule(self, case: Day) -> None:
        """The market jobs fire on the day exactly as the table says, in the right UTC
        instants across DST, and nothing market-bound fires on a closed day."""
        start = datetime.combine(case.day, time(0), tzinfo=EXCHANGE_TZ)
        end = datetime.combine(case.day + timedelta(days=1), time(0), tzinfo=EXCHANGE_TZ)
        fired = {}
        for job_id, job in JOBS.items():
            instants = fire_times(job, NYSE, start=start, end=end)
            if instants:
                fired[job_id] = (len(instants), instants[0], instants[-1])
        assert fired == case.fires
        due = due_fires(list(JOBS.values()), NYSE, now=noon(case.day), first_seen={})
        assert [(f.job_id, f.scheduled_for) for f in due] == case.due_at_noon
        after = noon(case.day)
        assert next_fires(JOBS["daily-snapshot"], NYSE, after=after, count=1) == [
            case.next_snapshot
        ]

    def test_default_snapshot_date(self, case: Day) -> None:
        """A snapshot without a date values the last completed session: at noon on a trading
        day the previous one, late in the day that day's (early close included)."""
        late = datetime.combine(case.day, time(23), tzinfo=EXCHANGE_TZ)
        snapshot = CreatePortfolioSnapshot()
        assert snapshot.valuation_dates(now=late) == [case.valuation_date]
        assert snapshot.valuation_dates(now=noon(case.day)) == [
            case.noon_valuation_date or case.valuation_date
        ]

    def test_performance_window(self, case: Day) -> None:
        """A 30-day performance window ends on the last session on or before the day and
        starts on the first session on or after 30 days before it."""
        window = performance_window(days=30, start=None, end=None, today=case.day)
        assert window == case.performance_30d
