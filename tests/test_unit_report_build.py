"""The report's pure building blocks: weights, allocation and the value series."""

from __future__ import annotations

from datetime import date

import pytest

from workers.analytics.performance import DailySeries
from workers.analytics.report_build import allocation, holdings_with_weights, value_series

D = date.fromisoformat


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
