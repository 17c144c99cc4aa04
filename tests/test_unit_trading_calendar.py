"""Sessions by instant, and override closures and early closes (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from service.core.trading_calendar import EXCHANGE_TZ, NYSE, TradingCalendar

OVERRIDES = TradingCalendar(
    closures=[date(2026, 10, 28)], early_closes={date(2026, 10, 30): time(13)}
)


def et(text: str) -> datetime:
    """A New York wall-clock instant from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=EXCHANGE_TZ)


@pytest.mark.parametrize(
    ("calendar", "now", "last_completed", "open_session"),
    [
        (NYSE, "2026-11-18 15:59", date(2026, 11, 17), date(2026, 11, 18)),
        (NYSE, "2026-11-18 16:00", date(2026, 11, 18), None),
        (NYSE, "2026-11-18 09:29", date(2026, 11, 17), None),
        (NYSE, "2026-11-27 13:00", date(2026, 11, 27), None),  # the early close
        (NYSE, "2026-11-27 12:59", date(2026, 11, 25), date(2026, 11, 27)),  # Thanksgiving
        (NYSE, "2026-11-29 12:00", date(2026, 11, 27), None),  # Sunday
        (NYSE, "2026-04-03 12:00", date(2026, 4, 2), None),  # Good Friday
        (NYSE, "2026-11-02 08:00", date(2026, 10, 30), None),  # after the DST switch
        (OVERRIDES, "2026-10-28 12:00", date(2026, 10, 27), None),  # override closure
        (OVERRIDES, "2026-10-30 13:30", date(2026, 10, 30), None),  # override early close
        (OVERRIDES, "2026-10-30 12:30", date(2026, 10, 29), date(2026, 10, 30)),
    ],
)
def test_sessions_by_instant(
    calendar: TradingCalendar,
    now: str,
    last_completed: date,
    open_session: date | None,
) -> None:
    """The last completed session and the running one follow closes, holidays and overrides."""
    assert calendar.last_completed_session(et(now)) == last_completed
    assert calendar.open_session(et(now)) == open_session


def test_override_early_close_and_equality() -> None:
    """An override early close moves the close and marks the day early; calendars with the
    same overrides are equal and hash alike."""
    day = date(2026, 10, 30)
    assert OVERRIDES.close_time(day) == time(13)
    assert OVERRIDES.is_early_close(day)
    assert OVERRIDES.close_at(day) == datetime(2026, 10, 30, 17, tzinfo=UTC)
    assert not NYSE.is_early_close(day)
    same = TradingCalendar(
        closures=[date(2026, 10, 28)], early_closes={date(2026, 10, 30): time(13)}
    )
    assert same == OVERRIDES
    assert hash(same) == hash(OVERRIDES)
    assert same != NYSE
