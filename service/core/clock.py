"""The one source of "now" for every process: the wall clock, or a pinned one.

Production reads the wall clock. A pinned clock (`CLOCK_START`, optionally
`CLOCK_ANCHOR` and `CLOCK_SPEED`) makes the API, the workers and the scheduler
agree on an instant that is not today's: tests pin it to awkward dates (a
Saturday, Good Friday, a DST switch) so that nothing passes or fails by the
calendar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from service.core.trading_calendar import EXCHANGE_TZ

if TYPE_CHECKING:
    from service.core.settings import Settings

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


def pinned_clock(start: datetime, *, anchor: float | None = None, speed: float = 1.0) -> Clock:
    """A clock that reads `start` at unix time `anchor` (default: now) and then runs at
    `speed` times real time. Processes given the same start and anchor agree."""
    if start.tzinfo is None:
        raise ValueError("a pinned clock needs an aware start instant")
    at = time.time() if anchor is None else anchor

    def now() -> datetime:
        return (start + timedelta(seconds=(time.time() - at) * speed)).astimezone(UTC)

    return now


def fixed_clock(instant: datetime) -> Clock:
    """A clock that always reads `instant` (pure tests)."""
    if instant.tzinfo is None:
        raise ValueError("a fixed clock needs an aware instant")
    frozen = instant.astimezone(UTC)
    return lambda: frozen


def exchange_today(clock: Clock) -> date:
    """Today's date on the exchange's (New York) calendar, by `clock`."""
    return clock().astimezone(EXCHANGE_TZ).date()


def clock_from_settings(settings: Settings) -> Clock:
    """The wall clock, or the clock pinned by `CLOCK_START`/`CLOCK_ANCHOR`/`CLOCK_SPEED`."""
    if settings.clock_start is None:
        return wall_clock
    return pinned_clock(
        settings.clock_start, anchor=settings.clock_anchor, speed=settings.clock_speed
    )
