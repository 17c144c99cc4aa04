"""Pure planning: which fires a job has in a UTC interval, given the trading calendar.

No I/O and no clock: every function takes the instants it needs. A job's times
are wall-clock times in the exchange's zone (America/New_York) and are turned
into UTC per calendar day, so daylight-saving changes move the UTC fire times
and never add, drop or repeat a fire. No job may fire between 01:00 and 03:00
local, where DST makes times vanish or repeat.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import msgspec

from service.core.contracts import TaskContract
from service.core.trading_calendar import EXCHANGE_TZ, TradingCalendar

QUIET_START = time(1, 0)
QUIET_END = time(3, 0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Namespace for fire task ids: uuid5(namespace, "job@scheduled-time") is stable across leaders.
FIRE_NAMESPACE = uuid.UUID("6c0b6f1e-4d55-4f59-9c53-7f2d9a1c2e10")


def every(start: time, end: time, step: timedelta) -> tuple[time, ...]:
    """Local times from `start` to `end` inclusive, `step` apart, within one day."""
    times: list[time] = []
    current = datetime.combine(date(2000, 1, 1), start)
    last = datetime.combine(date(2000, 1, 1), end)
    while current <= last:
        times.append(current.time())
        current += step
    return tuple(times)


@dataclass(frozen=True, slots=True)
class MarketTimes:
    """Fires at `regular` local times on trading days, at `early` times on early-close days."""

    regular: tuple[time, ...]
    early: tuple[time, ...]

    def local_times(self, day: date, calendar: TradingCalendar) -> tuple[time, ...]:
        """The local fire times on `day` (none on weekends, holidays and closures)."""
        if not calendar.is_trading_day(day):
            return ()
        return self.early if calendar.is_early_close(day) else self.regular

    def all_times(self) -> tuple[time, ...]:
        """Every local time this rule can fire at, on any day."""
        return tuple(sorted(set(self.regular) | set(self.early)))


@dataclass(frozen=True, slots=True)
class Weekly:
    """Fires once a week at local time `at` on `weekday` (Monday is 0), whatever the calendar."""

    weekday: int
    at: time

    def local_times(self, day: date, calendar: TradingCalendar) -> tuple[time, ...]:
        """`(at,)` on the rule's weekday, else nothing."""
        return (self.at,) if day.weekday() == self.weekday else ()

    def all_times(self) -> tuple[time, ...]:
        """Every local time this rule can fire at."""
        return (self.at,)


@dataclass(frozen=True, slots=True)
class Every:
    """Fires every `seconds` seconds, on multiples of `seconds` since the Unix epoch (UTC).

    Not calendar-aware; meant for the probe schedule, whose second-level fires let
    failover tests run in seconds rather than hours.
    """

    seconds: int

    def __post_init__(self) -> None:
        if self.seconds < 1:
            raise ValueError("an Every rule needs at least 1 second between fires")


Rule = MarketTimes | Weekly | Every


@dataclass(frozen=True, slots=True)
class Job:
    """One scheduled job: its id, the task it sends (a contract instance), and when."""

    id: str
    task: TaskContract
    rule: Rule
    grace: timedelta

    def __post_init__(self) -> None:
        if self.grace <= timedelta(0):
            raise ValueError(f"{self.id}: grace must be positive")
        if isinstance(self.rule, MarketTimes | Weekly):
            quiet = [t for t in self.rule.all_times() if QUIET_START <= t < QUIET_END]
            if quiet:
                raise ValueError(
                    f"{self.id}: fires at {quiet[0]:%H:%M}, inside the 01:00-03:00 DST window"
                )

    def task_at(self, instant: datetime) -> TaskContract:
        """The task a fire at `instant` sends: the job's task, with `as_of` set to the
        fire's instant when its contract has that field and the job leaves it empty."""
        if "as_of" in self.task.__struct_fields__ and getattr(self.task, "as_of") is None:  # noqa: B009
            return msgspec.structs.replace(self.task, as_of=instant)
        return self.task

    @property
    def dedupe_key(self) -> str:
        """Jobs sending the same task with the same arguments share this key; coinciding
        fires of such jobs run once."""
        return f"{self.task.name}:{json.dumps(self.task.kwargs(), sort_keys=True)}"


@dataclass(frozen=True, slots=True, order=True)
class Fire:
    """One planned fire: a job at a scheduled UTC instant."""

    scheduled_for: datetime
    job_id: str

    @property
    def task_id(self) -> str:
        """The Celery task id of this fire, the same for whichever leader sends it."""
        return fire_task_id(self.job_id, self.scheduled_for)


def fire_task_id(job_id: str, scheduled_for: datetime) -> str:
    """A UUID derived from the job id and the scheduled UTC instant."""
    instant = scheduled_for.astimezone(UTC).isoformat(timespec="microseconds")
    return str(uuid.uuid5(FIRE_NAMESPACE, f"{job_id}@{instant}"))


def fire_times(
    job: Job, calendar: TradingCalendar, *, start: datetime, end: datetime
) -> list[datetime]:
    """The job's fire instants (UTC) in `[start, end)`, in order; `start`/`end` are aware."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        return []
    rule = job.rule
    if isinstance(rule, Every):
        return _interval_times(rule.seconds, start=start, end=end)
    found: list[datetime] = []
    for day in _local_days(start, end):
        for local in rule.local_times(day, calendar):
            instant = datetime.combine(day, local, tzinfo=EXCHANGE_TZ).astimezone(UTC)
            if start <= instant < end:
                found.append(instant)
    return found


def _local_days(start: datetime, end: datetime) -> Iterator[date]:
    day = start.astimezone(EXCHANGE_TZ).date()
    last = end.astimezone(EXCHANGE_TZ).date()
    while day <= last:
        yield day
        day += timedelta(days=1)


def _interval_times(seconds: int, *, start: datetime, end: datetime) -> list[datetime]:
    step = timedelta(seconds=seconds)
    first = -((EPOCH - start) // step)  # ceil((start - EPOCH) / step)
    instant = EPOCH + first * step
    found: list[datetime] = []
    while instant < end:
        found.append(instant)
        instant += step
    return found


def due_fires(
    jobs: list[Job],
    calendar: TradingCalendar,
    *,
    now: datetime,
    first_seen: Mapping[str, datetime],
    grace_floor: timedelta = timedelta(0),
) -> list[Fire]:
    """Every fire due at `now` still inside its job's grace window, oldest first.

    A job's window is `[max(now - grace, first_seen[job]), now]`: fires missed while no
    leader ran are caught up, but never fires from before the scheduler first knew the job.
    No grace is shorter than `grace_floor` (see `grace_floor_for`).
    Among fires at the same instant, table order decides which is claimed first.
    """
    order = {job.id: index for index, job in enumerate(jobs)}
    fires: list[Fire] = []
    for job in jobs:
        start = now - max(job.grace, grace_floor)
        seen = first_seen.get(job.id)
        if seen is not None:
            start = max(start, seen)
        for instant in fire_times(job, calendar, start=start, end=now + timedelta(microseconds=1)):
            fires.append(Fire(scheduled_for=instant, job_id=job.id))
    return sorted(fires, key=lambda fire: (fire.scheduled_for, order[fire.job_id]))


# However fast a test or demo clock runs, a fire stays claimable for this many real seconds.
MIN_REAL_GRACE_SECONDS = 5.0


def grace_floor_for(clock_speed: float) -> timedelta:
    """The shortest grace, in clock time, for a clock running `clock_speed` times real time.

    At real speed it is a few seconds, below every job's grace. On a fast test clock a job's
    grace (10 minutes) lasts a fraction of a real second, and any pause of the leader would
    drop fires that a real leader would still send.
    """
    return timedelta(seconds=MIN_REAL_GRACE_SECONDS * clock_speed)


def next_fires(
    job: Job, calendar: TradingCalendar, *, after: datetime, count: int, horizon_days: int = 21
) -> list[datetime]:
    """The job's next `count` fire instants strictly after `after`, looking `horizon_days` ahead."""
    start = after + timedelta(microseconds=1)
    found: list[datetime] = []
    window = timedelta(days=1)
    for offset in range(horizon_days):
        chunk_start = start + offset * window
        found.extend(fire_times(job, calendar, start=chunk_start, end=chunk_start + window))
        if len(found) >= count:
            break
    return found[:count]


def wake_times(rule: Rule) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Hours and minutes (local) of a cron trigger that wakes on or before every fire of `rule`."""
    if isinstance(rule, Every):
        raise ValueError("an Every rule wakes on an interval, not on cron times")
    times = rule.all_times()
    return tuple(sorted({t.hour for t in times})), tuple(sorted({t.minute for t in times}))
