"""The one `N/period` rate grammar shared by settings and both limiters."""

from __future__ import annotations

import pytest

from service.core.rates import Rate, parse_rate
from service.core.settings import ConfigError, Settings


class TestParseRate:
    @pytest.mark.parametrize(
        ("text", "count", "period_seconds", "interval"),
        [
            ("1/second", 1, 1, 1.0),
            ("50/second", 50, 1, 0.02),
            ("5/minute", 5, 60, 12.0),
            ("120/minute", 120, 60, 0.5),
            ("50/hour", 50, 3600, 72.0),
            ("1/day", 1, 86_400, 86_400.0),
            ("007/minute", 7, 60, 60 / 7),
        ],
    )
    def test_valid(self, text: str, count: int, period_seconds: int, interval: float) -> None:
        """A well-formed rate gives its count, its period in seconds and the even spacing."""
        rate = parse_rate(text)
        assert rate == Rate(count=count, period_seconds=period_seconds)
        assert rate.interval == pytest.approx(interval)

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "0/minute",
            "00/second",
            "-1/second",
            "1.5/second",
            "5/minutes",
            "5/Minute",
            "5 /minute",
            " 5/minute",
            "5/minute ",
            "minute",
            "5",
            "5/",
            "/minute",
            "5/minute/2",
        ],
    )
    def test_invalid(self, text: str) -> None:
        """Anything but a positive integer, a slash and a period name is refused."""
        with pytest.raises(ValueError, match="120/minute"):
            parse_rate(text)

    @pytest.mark.parametrize(("count", "period_seconds"), [(0, 60), (5, 0), (-1, 1)])
    def test_rate_must_be_positive(self, count: int, period_seconds: int) -> None:
        """A Rate built directly still refuses a zero or negative count or period."""
        with pytest.raises(ValueError, match="positive"):
            Rate(count=count, period_seconds=period_seconds)


def _parses(text: str) -> bool:
    try:
        parse_rate(text)
    except ValueError:
        return False
    return True


def _loads(text: str) -> bool:
    try:
        Settings.from_env({"TIINGO_RATE_LIMIT": text})
    except ConfigError:
        return False
    return True


class TestSettingsAgree:
    @pytest.mark.parametrize(
        "text",
        ["5/minute", "007/hour", "0/minute", "5/minutes", "1.5/second", "5/minute\n", " 5/minute"],
    )
    def test_settings_load_what_the_parser_parses(self, text: str) -> None:
        """A rate setting loads if and only if the shared parser accepts it."""
        assert _loads(text) == _parses(text)
