"""The incremental planner against the NYSE calendar: windows that start on a closed day or
before a symbol's first trade count as covered, and what a fetch teaches about the first
date a provider has."""

from __future__ import annotations

from datetime import date

import pytest

from service.core.trading_calendar import NYSE
from workers.market_data.plan import (
    StoredRange,
    Window,
    first_available_from,
    first_session_on_or_after,
    incremental_window,
    withdrawn_dividends,
)
from workers.market_data.types import Bar, Dividend, History

D = date.fromisoformat
END = D("2026-11-30")  # a Monday


class TestFirstSession:
    @pytest.mark.parametrize(
        ("day", "expected"),
        [
            ("2025-11-29", "2025-12-01"),  # Saturday
            ("2025-11-30", "2025-12-01"),  # Sunday
            ("2026-01-19", "2026-01-20"),  # MLK day
            ("2026-04-03", "2026-04-06"),  # Good Friday, then a weekend
            ("2026-01-01", "2026-01-02"),  # New Year's Day
            ("2026-11-27", "2026-11-27"),  # an early close is still a session
        ],
    )
    def test_first_session_on_or_after(self, day: str, expected: str) -> None:
        """A closed day moves to the next session; a session, early close or not, stays."""
        assert first_session_on_or_after(D(day), NYSE) == D(expected)


class TestIncrementalWindow:
    @pytest.mark.parametrize(
        ("wanted_start", "stored", "expected"),
        [
            pytest.param(
                "2025-11-29",
                StoredRange(D("2025-12-01"), D("2026-11-27")),
                Window(D("2026-11-22"), END),
                id="window-starts-saturday",
            ),
            pytest.param(
                "2025-11-30",
                StoredRange(D("2025-12-01"), D("2026-11-27")),
                Window(D("2026-11-22"), END),
                id="window-starts-sunday",
            ),
            pytest.param(
                "2026-01-19",
                StoredRange(D("2026-01-20"), D("2026-11-27")),
                Window(D("2026-11-22"), END),
                id="window-starts-holiday-monday",
            ),
            pytest.param(
                "2025-01-02",
                StoredRange(D("2026-03-02"), D("2026-11-27"), first_available=D("2026-03-02")),
                Window(D("2026-11-22"), END),
                id="window-starts-before-first-trade",
            ),
            pytest.param(
                "1970-01-01",
                StoredRange(D("2000-01-03"), D("2026-11-27"), first_available=D("2000-01-03")),
                Window(D("2026-11-22"), END),
                id="max-period-back-to-first-trade",
            ),
            pytest.param(
                "2025-01-02",
                StoredRange(D("2026-03-02"), D("2026-11-27")),
                Window(D("2025-01-02"), END),
                id="first-trade-unknown-refetches",
            ),
            pytest.param(
                "2025-11-29",
                StoredRange(D("2025-12-02"), D("2026-11-27")),
                Window(D("2025-11-29"), END),
                id="stored-range-does-not-reach-the-start",
            ),
            pytest.param(
                "2025-01-02",
                StoredRange(D("2026-03-03"), D("2026-11-27"), first_available=D("2026-03-02")),
                Window(D("2025-01-02"), END),
                id="stored-starts-after-first-available",
            ),
            pytest.param(
                "2026-11-20",
                StoredRange(D("2025-06-02"), D("2026-11-23")),
                Window(D("2026-11-20"), END),
                id="overlap-never-before-wanted-start",
            ),
            pytest.param(
                "2025-11-28",
                StoredRange(D("2025-06-02"), D("2026-11-25")),
                Window(D("2026-11-20"), END),
                id="overlap-resume",
            ),
            pytest.param(
                "2025-11-28",
                StoredRange(D("2020-01-02"), D("2024-01-02")),
                Window(D("2025-11-28"), END),
                id="stored-ends-before-the-start",
            ),
        ],
    )
    def test_refresh_window(self, wanted_start: str, stored: StoredRange, expected: Window) -> None:
        """The refresh resumes five days before the last bar exactly when stored history
        reaches the first session of the window (or the provider's first date); else it
        fetches the whole window."""
        wanted = Window(D(wanted_start), END)
        assert incremental_window(wanted, stored, overlap_days=5, calendar=NYSE) == expected


class TestFirstAvailable:
    @pytest.mark.parametrize(
        ("fetched", "first_bar", "stored", "expected"),
        [
            pytest.param(
                Window(D("1970-01-01"), END), "2000-01-03", None, "2000-01-03", id="max-period"
            ),
            pytest.param(
                Window(D("2025-01-02"), END), "2026-03-02", None, "2026-03-02", id="new-listing"
            ),
            pytest.param(
                Window(D("2025-11-29"), END), "2025-12-01", None, None, id="starts-saturday"
            ),
            pytest.param(
                Window(D("2026-01-19"), END), "2026-01-20", None, None, id="starts-holiday"
            ),
            pytest.param(Window(D("2025-12-01"), END), None, None, None, id="no-bars"),
            pytest.param(
                Window(D("2026-11-20"), END),
                "2026-11-24",
                StoredRange(D("2025-12-01"), D("2026-11-25")),
                None,
                id="incremental-fetch-teaches-nothing",
            ),
            pytest.param(
                Window(D("2020-01-02"), END),
                "2022-05-02",
                StoredRange(D("2022-05-02"), D("2026-11-25")),
                "2022-05-02",
                id="deeper-window-than-stored",
            ),
        ],
    )
    def test_first_available_from(
        self,
        fetched: Window,
        first_bar: str | None,
        stored: StoredRange | None,
        expected: str | None,
    ) -> None:
        """A fetch that started before every stored bar and got its first bar after the
        window's first session shows the provider's first date; any other fetch shows none."""
        found = first_available_from(
            fetched,
            first_bar=D(first_bar) if first_bar else None,
            stored=stored,
            calendar=NYSE,
        )
        assert found == (D(expected) if expected else None)


def _history(bars: tuple[str, str] | None, dividends: list[str], *, complete: bool) -> History:
    """A history with bars on its first and last date (none when `bars` is None)."""
    return History(
        symbol="X",
        bars=[
            Bar(date=D(day), open=None, high=None, low=None, close=1.0, adj_close=None, volume=None)
            for day in (bars or ())
        ],
        dividends=[Dividend(date=D(day), amount=0.1) for day in dividends],
        dividends_complete=complete,
    )


class TestWithdrawnDividends:
    WINDOW = Window(D("2026-10-29"), D("2026-11-18"))
    STORED = ["2026-08-03", "2026-11-02", "2026-11-16"]

    @pytest.mark.parametrize(
        ("bars", "reported", "complete", "expected"),
        [
            pytest.param(
                ("2026-10-29", "2026-11-17"), ["2026-11-02", "2026-11-16"], True, [], id="all-kept"
            ),
            pytest.param(
                ("2026-10-29", "2026-11-17"),
                ["2026-11-16"],
                True,
                ["2026-11-02"],
                id="one-withdrawn-in-window",
            ),
            pytest.param(
                ("2026-10-29", "2026-11-17"),
                [],
                True,
                ["2026-11-02", "2026-11-16"],
                id="older-one-outside-window-stays",
            ),
            pytest.param(
                ("2026-10-29", "2026-11-17"), [], False, [], id="truncated-listing-withdraws-none"
            ),
            pytest.param(None, [], True, [], id="no-bars-withdraws-none"),
            pytest.param(
                ("2026-11-03", "2026-11-13"),
                [],
                True,
                [],
                id="outside-the-bars-the-provider-returned",
            ),
        ],
    )
    def test_withdrawn(
        self,
        bars: tuple[str, str] | None,
        reported: list[str],
        complete: bool,
        expected: list[str],
    ) -> None:
        """Only stored ex-dates inside both the fetched window and the returned bars, absent
        from a complete answer, are withdrawn."""
        history = _history(bars, reported, complete=complete)
        stored = [D(day) for day in self.STORED]
        assert withdrawn_dividends(history, window=self.WINDOW, stored=stored) == [
            D(day) for day in expected
        ]
