"""Task kwargs: validation, the performance window and the snapshot dates."""

from __future__ import annotations

from datetime import date
from typing import Any

import msgspec
import pytest

from workers.analytics.params import (
    PerformanceParams,
    ReportParams,
    SnapshotParams,
    performance_window,
)
from workers.analytics.performance import DailySeries
from workers.analytics.report_build import allocation, holdings_with_weights, value_series

D = date.fromisoformat


class TestPerformanceWindow:
    @pytest.mark.parametrize(
        ("kwargs", "today", "expected"),
        [
            # Thanksgiving 2026 is closed: the end is the Wednesday before.
            ({"days": 30}, "2026-11-26", ("2026-10-26", "2026-11-25")),
            # 30 days before Monday 2024-07-08 is Saturday 2024-06-08: the base is Monday.
            ({"days": 30}, "2024-07-08", ("2024-06-10", "2024-07-08")),
            (
                {"start": D("2019-06-22"), "end": D("2019-07-06")},
                "2026-01-05",
                ("2019-06-24", "2019-07-05"),
            ),
            (
                {"start": D("2019-06-24"), "end": D("2031-01-01")},
                "2024-01-02",
                ("2019-06-24", "2024-01-02"),
            ),
            ({}, "2024-12-31", ("2024-01-02", "2024-12-31")),
        ],
    )
    def test_window(self, kwargs: dict[str, Any], today: str, expected: tuple[str, str]) -> None:
        """`days` counts back from the last trading day; the base is the first trading day on
        or after the start; the end never passes today."""
        base, end = performance_window(
            days=kwargs.get("days"),
            start=kwargs.get("start"),
            end=kwargs.get("end"),
            today=D(today),
        )
        assert (base.isoformat(), end.isoformat()) == expected


class TestParams:
    @pytest.mark.parametrize(
        ("cls", "kwargs", "message"),
        [
            (SnapshotParams, {"date": "2024-01-02", "start": "2024-01-01"}, "either date"),
            (SnapshotParams, {"start": "2024-02-01", "end": "2024-01-01"}, "after end"),
            (SnapshotParams, {"end": "2024-01-01"}, "end needs start"),
            (SnapshotParams, {"portfolio_ids": [0]}, ">= 1"),
            (PerformanceParams, {"days": 30}, "portfolio_id or user_id"),
            (PerformanceParams, {"user_id": 1, "days": 3, "start": "2024-01-01"}, "either days"),
            (ReportParams, {"portfolio_id": 1, "format": "pdf"}, "Invalid enum value"),
            (ReportParams, {"portfolio_id": 1, "colour": "red"}, "unknown field"),
        ],
    )
    def test_invalid_kwargs(self, cls: type[Any], kwargs: dict[str, Any], message: str) -> None:
        """Contradictory or unknown task kwargs fail validation with a message saying why."""
        with pytest.raises(msgspec.ValidationError, match=message):
            msgspec.convert(kwargs, cls, strict=False)

    def test_snapshot_dates(self) -> None:
        """A range yields its trading days; a single weekend date is kept as asked."""
        ranged = msgspec.convert({"start": "2024-07-03", "end": "2024-07-08"}, SnapshotParams)
        assert ranged.valuation_dates(today=D("2024-08-01")) == [
            D("2024-07-03"),
            D("2024-07-05"),
            D("2024-07-08"),
        ]
        single = msgspec.convert({"date": "2024-07-06"}, SnapshotParams)
        assert single.valuation_dates(today=D("2024-08-01")) == [D("2024-07-06")]
        default = SnapshotParams()
        assert default.valuation_dates(today=D("2024-07-06")) == [D("2024-07-05")]


class TestReportBuild:
    def test_weights_and_allocation_include_cash(self) -> None:
        """Weights divide by the total including cash; cash is its own allocation line."""
        holdings = holdings_with_weights(
            [{"symbol": "A", "market_value": 600.0}, {"symbol": "B", "market_value": 200.0}],
            cash=200.0,
            assets={},
        )
        assert [(h["symbol"], h["weight"], h["sector"]) for h in holdings] == [
            ("A", 0.6, "Unclassified"),
            ("B", 0.2, "Unclassified"),
        ]
        assert allocation(holdings, cash=200.0, key="sector") == [
            {"name": "Unclassified", "value": 800.0, "weight": 0.8},
            {"name": "Cash", "value": 200.0, "weight": 0.2},
        ]

    def test_value_series_growth_ignores_deposits(self) -> None:
        """The growth line chains returns, so a deposit does not look like a gain; the
        benchmark line is null on its missing day."""
        days = (D("2024-01-02"), D("2024-01-03"), D("2024-01-04"))
        series = DailySeries(dates=days, values=(100.0, 220.0, 231.0), flows=(0.0, 100.0, 0.0))
        points = value_series(
            series, benchmark_dates=[days[0], days[2]], benchmark_closes=[50.0, 55.0]
        )
        assert [p["growth"] for p in points] == pytest.approx([1.0, 1.1, 1.155])
        assert [p["benchmark_growth"] for p in points] == [1.0, None, pytest.approx(1.1)]
