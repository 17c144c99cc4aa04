"""The pure planner: fire times per job across DST changes, holidays and early closes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from service.core.contracts import Cleanup, SchedulerProbe
from service.core.trading_calendar import EXCHANGE_TZ, TradingCalendar
from service.scheduler.jobs import MARKET_JOBS, PROBE_JOBS, jobs_for
from service.scheduler.plan import (
    Every,
    Fire,
    Job,
    MarketTimes,
    Weekly,
    due_fires,
    fire_task_id,
    fire_times,
    grace_floor_for,
    next_fires,
    wake_times,
)
from service.scheduler.replica import wake_trigger

NYSE = TradingCalendar()
JOBS = {job.id: job for job in jobs_for("market")}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local_day(day: date) -> tuple[datetime, datetime]:
    """The UTC bounds of one New York calendar day."""
    start = datetime.combine(day, time(0), tzinfo=EXCHANGE_TZ)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=EXCHANGE_TZ)
    return start.astimezone(UTC), end.astimezone(UTC)


def hours_utc(fires: list[datetime]) -> list[str]:
    return [f"{fire:%H:%M}" for fire in fires]


def fires_on(job_id: str, day: date, calendar: TradingCalendar = NYSE) -> list[datetime]:
    start, end = local_day(day)
    return fire_times(JOBS[job_id], calendar, start=start, end=end)


class TestFireTimes:
    @pytest.mark.parametrize(
        ("job_id", "day", "expected"),
        [
            # Monday after spring-forward (EDT, UTC-4): 09:00-16:00 local.
            (
                "hourly-price-update",
                date(2026, 3, 9),
                ["13:00", "14:00", "15:00", "16:00", "17:00", "18:00", "19:00", "20:00"],
            ),
            # Monday after fall-back (EST, UTC-5).
            (
                "hourly-price-update",
                date(2026, 11, 2),
                ["14:00", "15:00", "16:00", "17:00", "18:00", "19:00", "20:00", "21:00"],
            ),
            # The Friday before spring-forward is still EST.
            (
                "hourly-price-update",
                date(2026, 3, 6),
                ["14:00", "15:00", "16:00", "17:00", "18:00", "19:00", "20:00", "21:00"],
            ),
            ("daily-snapshot", date(2026, 3, 9), ["20:30"]),
            ("daily-snapshot", date(2026, 11, 2), ["21:30"]),
            # Thanksgiving: NYSE closed, no market job fires.
            ("hourly-price-update", date(2026, 11, 26), []),
            ("daily-snapshot", date(2026, 11, 26), []),
            ("extended-hours-update", date(2026, 11, 26), []),
            # Day after Thanksgiving closes at 13:00: hourly 09-13, snapshot 13:30 (EST).
            (
                "hourly-price-update",
                date(2026, 11, 27),
                ["14:00", "15:00", "16:00", "17:00", "18:00"],
            ),
            ("daily-snapshot", date(2026, 11, 27), ["18:30"]),
            # Weekends fire no market job.
            ("hourly-price-update", date(2026, 3, 8), []),
            ("extended-hours-update", date(2026, 11, 1), []),
        ],
    )
    def test_market_job_fires_on_day(self, job_id: str, day: date, expected: list[str]) -> None:
        """Market jobs fire at their local times converted per day to UTC, only on trading days."""
        assert hours_utc(fires_on(job_id, day)) == expected

    @pytest.mark.parametrize(
        ("day", "count", "first_local", "last_local"),
        [
            (date(2026, 3, 9), 29, time(6), time(20)),  # 06:00-20:00 every 30 min
            (date(2026, 11, 2), 29, time(6), time(20)),
            (date(2026, 11, 27), 23, time(6), time(17)),  # early close: until 17:00
        ],
    )
    def test_extended_hours_window(
        self, day: date, count: int, first_local: time, last_local: time
    ) -> None:
        """Extended hours fire every 30 min, both ends included, until 17:00 on early closes."""
        fires = fires_on("extended-hours-update", day)
        local = [fire.astimezone(EXCHANGE_TZ).time() for fire in fires]
        assert (len(fires), local[0], local[-1]) == (count, first_local, last_local)

    @pytest.mark.parametrize(
        ("day", "expected_utc"),
        [
            (date(2026, 3, 8), "2026-03-08T08:00:00+00:00"),  # spring-forward Sunday, EDT
            (date(2026, 11, 1), "2026-11-01T09:00:00+00:00"),  # fall-back Sunday, EST
            (date(2026, 11, 8), "2026-11-08T09:00:00+00:00"),
        ],
    )
    def test_cleanup_fires_once_on_sunday(self, day: date, expected_utc: str) -> None:
        """The Sunday cleanup fires exactly once at 04:00 local, DST Sundays included."""
        assert [fire.isoformat() for fire in fires_on("weekly-cleanup", day)] == [expected_utc]

    def test_cleanup_fires_once_per_week_over_a_year(self) -> None:
        """Over 2026 the cleanup fires once per Sunday and never on another day."""
        fires = fire_times(
            JOBS["weekly-cleanup"], NYSE, start=utc("2026-01-01T00:00"), end=utc("2027-01-01T00:00")
        )
        sundays = [fire.astimezone(EXCHANGE_TZ) for fire in fires]
        assert len(fires) == 52
        assert all(f.weekday() == 6 and f.time() == time(4) for f in sundays)

    def test_extra_closure_silences_market_jobs(self) -> None:
        """A closure from the override table stops every market job on that day."""
        closed = TradingCalendar(closures=[date(2026, 3, 9)])
        assert fires_on("hourly-price-update", date(2026, 3, 9), closed) == []
        assert fires_on("weekly-cleanup", date(2026, 3, 8), closed) != []

    @pytest.mark.parametrize(
        ("start", "end", "expected"),
        [
            (
                "2026-01-01T00:00:00",
                "2026-01-01T00:00:07",
                ["00:00:00", "00:00:02", "00:00:04", "00:00:06"],
            ),
            ("2026-01-01T00:00:01", "2026-01-01T00:00:04", ["00:00:02"]),
            ("2026-01-01T00:00:02", "2026-01-01T00:00:02", []),
        ],
    )
    def test_interval_rule(self, start: str, end: str, expected: list[str]) -> None:
        """An Every rule fires on multiples of its period since the epoch, in [start, end)."""
        job = Job(id="t", task=SchedulerProbe(), rule=Every(seconds=2), grace=timedelta(seconds=5))
        fires = fire_times(job, NYSE, start=utc(start), end=utc(end))
        assert [f"{fire:%H:%M:%S}" for fire in fires] == expected

    def test_naive_bounds_are_refused(self) -> None:
        """Planning refuses naive datetimes rather than guess their zone."""
        with pytest.raises(ValueError, match="timezone-aware"):
            fire_times(
                JOBS["daily-snapshot"],
                NYSE,
                start=datetime(2026, 1, 1),
                end=utc("2026-01-02T00:00"),
            )


class TestDueFires:
    def test_coinciding_hourly_and_extended_fires_are_both_due_hourly_first(self) -> None:
        """At 10:00 local both update jobs are due; the hourly job comes first and wins the tie."""
        now = utc("2026-03-09T14:00:00")
        jobs = [JOBS["hourly-price-update"], JOBS["extended-hours-update"]]
        due = due_fires(jobs, NYSE, now=now, first_seen={})
        at_now = [fire.job_id for fire in due if fire.scheduled_for == now]
        assert at_now == ["hourly-price-update", "extended-hours-update"]
        assert JOBS["hourly-price-update"].dedupe_key == JOBS["extended-hours-update"].dedupe_key

    @pytest.mark.parametrize(
        ("now", "job_id", "expected"),
        [
            # 19 minutes after 10:00 EDT: the 10:00 hourly fire is still in its 20-min grace.
            ("2026-03-09T14:19:00", "hourly-price-update", ["2026-03-09T14:00:00+00:00"]),
            # 21 minutes after: it is lost (past grace), and the 11:00 is not yet due.
            ("2026-03-09T14:21:00", "hourly-price-update", []),
            # Extended grace is 10 min: 10:00 and 10:30 fires, now 10:39.
            ("2026-03-09T14:39:00", "extended-hours-update", ["2026-03-09T14:30:00+00:00"]),
            # Snapshot 16:30 EDT caught up 5 h later.
            ("2026-03-10T01:30:00", "daily-snapshot", ["2026-03-09T20:30:00+00:00"]),
        ],
    )
    def test_grace_window(self, now: str, job_id: str, expected: list[str]) -> None:
        """A fire is due from its time until its job's grace window has passed."""
        due = due_fires([JOBS[job_id]], NYSE, now=utc(now), first_seen={})
        assert [fire.scheduled_for.isoformat() for fire in due] == expected

    def test_no_replay_from_before_first_run(self) -> None:
        """Fires before the scheduler first knew the job are never due, even inside grace."""
        job = JOBS["hourly-price-update"]
        now = utc("2026-03-09T14:10:00")
        assert (
            due_fires([job], NYSE, now=now, first_seen={job.id: utc("2026-03-09T14:05:00")}) == []
        )
        assert (
            len(due_fires([job], NYSE, now=now, first_seen={job.id: utc("2026-03-09T13:00:00")}))
            == 1
        )

    def test_grace_floor_keeps_a_fast_clocks_fire_due(self) -> None:
        """On a clock running 5,000 times real time, half-hourly fires missed by 11 and 41
        clock minutes (fractions of a real second) are still due: no grace is shorter than
        the floor."""
        now = utc("2026-03-09T15:11:00")  # 11:11 EDT: the 11:00 fire is past its grace
        job = JOBS["extended-hours-update"]
        assert due_fires([job], NYSE, now=now, first_seen={}) == []
        floored = due_fires([job], NYSE, now=now, first_seen={}, grace_floor=grace_floor_for(5000))
        assert [f.scheduled_for.isoformat() for f in floored][-2:] == [
            "2026-03-09T14:30:00+00:00",
            "2026-03-09T15:00:00+00:00",
        ]
        assert grace_floor_for(1.0) < min(j.grace for j in JOBS.values())

    def test_fire_at_exactly_now_is_due(self) -> None:
        """A fire scheduled for the current instant is due."""
        now = utc("2026-03-09T20:30:00")
        assert due_fires([JOBS["daily-snapshot"]], NYSE, now=now, first_seen={}) == [
            Fire(scheduled_for=now, job_id="daily-snapshot")
        ]


class TestNextFires:
    def test_next_fires_skip_holiday_and_weekend(self) -> None:
        """After Wednesday's snapshot the next ones are Friday's early 13:30 and Monday's 16:30."""
        after = utc("2026-11-25T22:00:00")
        fires = next_fires(JOBS["daily-snapshot"], NYSE, after=after, count=2)
        local = [fire.astimezone(EXCHANGE_TZ).strftime("%a %H:%M") for fire in fires]
        assert local == ["Fri 13:30", "Mon 16:30"]

    def test_next_fires_are_strictly_after(self) -> None:
        """A fire at exactly `after` is not a next fire."""
        after = utc("2026-03-09T20:30:00")
        assert next_fires(JOBS["daily-snapshot"], NYSE, after=after, count=1)[0] > after


class TestJobs:
    def test_table_ids(self) -> None:
        """The market table holds the five jobs the dashboard relies on, in tie-break order."""
        assert [job.id for job in MARKET_JOBS] == [
            "hourly-price-update",
            "session-closes",
            "daily-snapshot",
            "extended-hours-update",
            "weekly-cleanup",
        ]
        assert [job.task.name for job in jobs_for("market")] == [
            "update_portfolio_prices",
            "store_session_closes",
            "create_portfolio_snapshot",
            "update_portfolio_prices",
            "cleanup",
        ]

    @pytest.mark.parametrize(
        "rule",
        [
            Weekly(weekday=6, at=time(2, 30)),
            MarketTimes(regular=(time(1, 0),), early=()),
            MarketTimes(regular=(time(9),), early=(time(2, 59),)),
        ],
    )
    def test_quiet_hours_refused(self, rule: Weekly | MarketTimes) -> None:
        """A job firing between 01:00 and 03:00 local is refused when the table is built."""
        with pytest.raises(ValueError, match="DST window"):
            Job(id="bad", task=Cleanup(), rule=rule, grace=timedelta(minutes=1))

    def test_a_fire_carries_its_instant_where_the_contract_takes_one(self) -> None:
        """Session closes and snapshots are sent with `as_of` = the fire's instant; price
        updates (no such field) are sent as written."""
        instant = utc("2026-11-27T18:05:00")
        closes = JOBS["session-closes"].task_at(instant)
        assert closes.kwargs() == {"as_of": "2026-11-27T18:05:00Z"}
        assert JOBS["daily-snapshot"].task_at(instant).kwargs() == {"as_of": "2026-11-27T18:05:00Z"}
        assert JOBS["hourly-price-update"].task_at(instant) == JOBS["hourly-price-update"].task

    def test_probe_table_builds(self) -> None:
        """The probe table converts like the market one."""
        assert [job.id for job in PROBE_JOBS] == [
            "probe-every-2s",
            "probe-shadow-every-4s",
        ]

    def test_task_id_is_deterministic_per_job_and_instant(self) -> None:
        """A fire's task id depends only on job id and instant, whatever the instant's zone."""
        instant = utc("2026-03-09T14:00:00")
        same = instant.astimezone(EXCHANGE_TZ)
        assert fire_task_id("daily-snapshot", instant) == fire_task_id("daily-snapshot", same)
        assert fire_task_id("daily-snapshot", instant) != fire_task_id(
            "hourly-price-update", instant
        )

    def test_wake_times_cover_every_fire(self) -> None:
        """The cron wake-up of the hourly job covers 09-16 on the hour."""
        assert wake_times(JOBS["hourly-price-update"].rule) == (tuple(range(9, 17)), (0,))


class TestWakeTrigger:
    @pytest.mark.parametrize("job_id", [job.id for job in MARKET_JOBS])
    @pytest.mark.parametrize(
        "day", [date(2026, 3, 8), date(2026, 3, 9), date(2026, 11, 1), date(2026, 11, 27)]
    )
    def test_cron_wake_ups_cover_every_planned_fire(self, job_id: str, day: date) -> None:
        """APScheduler's cron trigger for a job wakes the leader at every fire the planner plans."""
        job = JOBS[job_id]
        trigger = wake_trigger(job.rule)
        start, end = local_day(day)
        wakes: list[datetime] = []
        previous = None
        now = start - timedelta(microseconds=1)
        while True:
            wake = trigger.get_next_fire_time(previous, now)
            if wake is None or wake >= end:
                break
            wakes.append(wake.astimezone(UTC))
            previous, now = wake, wake
        planned = fire_times(job, NYSE, start=start, end=end)
        assert set(planned) <= set(wakes)
