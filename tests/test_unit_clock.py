"""The clock every process reads: wall clock by default, pinned by CLOCK_* settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from service.core.clock import clock_from_settings, exchange_today, fixed_clock, wall_clock
from service.core.settings import ConfigError, Settings

START = "2026-11-27T12:00:00-05:00"


class TestClockFromSettings:
    def test_unset_is_the_wall_clock(self) -> None:
        """Without CLOCK_START every process reads the wall clock."""
        assert clock_from_settings(Settings.from_env({})) is wall_clock

    def test_pinned_reads_the_start_at_the_anchor(self) -> None:
        """CLOCK_START read at CLOCK_ANCHOR; a near-zero speed keeps it at the start."""
        settings = Settings.from_env(
            {"CLOCK_START": START, "CLOCK_ANCHOR": "1800000000", "CLOCK_SPEED": "1e-12"}
        )
        now = clock_from_settings(settings)()
        assert now.tzinfo is not None
        assert abs(now - datetime.fromisoformat(START)) < timedelta(seconds=1)
        assert exchange_today(clock_from_settings(settings)) == date(2026, 11, 27)

    @pytest.mark.parametrize(
        "env",
        [
            {"CLOCK_START": "2026-11-27T12:00:00"},
            {"CLOCK_START": START, "CLOCK_SPEED": "0"},
            {"CLOCK_START": "tomorrow"},
        ],
    )
    def test_invalid_clock_settings_are_refused(self, env: dict[str, str]) -> None:
        """A naive start instant, a non-positive speed or a non-date is a configuration error."""
        with pytest.raises(ConfigError):
            Settings.from_env(env)


class TestExchangeToday:
    @pytest.mark.parametrize(
        ("instant", "expected"),
        [
            (datetime(2026, 1, 1, 4, 59, tzinfo=UTC), date(2025, 12, 31)),
            (datetime(2026, 1, 1, 5, 0, tzinfo=UTC), date(2026, 1, 1)),
            (datetime(2026, 7, 4, 3, 59, tzinfo=UTC), date(2026, 7, 3)),
        ],
    )
    def test_date_in_new_york(self, instant: datetime, expected: date) -> None:
        """Today is the New York date, whatever the UTC date (EST and EDT offsets)."""
        assert exchange_today(fixed_clock(instant)) == expected
