"""One portfolio's performance over a window, from its daily values: pure.

Turns the daily series (values and external flows on trading days, the first
day being the base) plus the benchmark's closes into the stored result:
`{"metrics": {...}, "unavailable": {metric: reason}}`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from workers.analytics import metrics as m

METRIC_NAMES = (
    "total_return",
    "twr",
    "mwr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "beta",
    "correlation",
    "best_day",
    "worst_day",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DailySeries:
    """Trading-day values of a portfolio; `flows[i]` arrived since `dates[i-1]`."""

    dates: tuple[date, ...]
    values: tuple[float, ...]
    flows: tuple[float, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PerformanceResult:
    """The metrics that could be computed and the reasons for those that could not."""

    metrics: dict[str, Any]
    unavailable: dict[str, str]
    total_return_annualised: bool


def from_inception(series: DailySeries, *, day_before: date) -> DailySeries:
    """The series with a zero value on `day_before` (the trading day before the portfolio's
    first) prepended, so the first day's gain on the money that came in that day counts.

    Without it the inception day would be the base and its return (trade prices to that
    day's close) would be lost. A first day without an inflow is left as it is.
    """
    if not series.dates or series.flows[0] <= 0 or day_before >= series.dates[0]:
        return series
    return DailySeries(
        dates=(day_before, *series.dates),
        values=(0.0, *series.values),
        flows=(0.0, *series.flows),
    )


def mwr_flows(series: DailySeries) -> tuple[list[float], list[date]]:
    """XIRR flows from the investor's side: start value and deposits in, end value out."""
    flows = np.asarray(series.flows, dtype=np.float64)
    moved = np.flatnonzero(flows[1:]) + 1
    amounts = [-series.values[0], *(-flows[moved]).tolist(), series.values[-1]]
    days = [series.dates[0], *(series.dates[i] for i in moved), series.dates[-1]]
    return amounts, days


def compute_performance(
    series: DailySeries,
    *,
    benchmark_dates: Sequence[date],
    benchmark_closes: Sequence[float],
    risk_free_annual: float,
) -> PerformanceResult:
    """Every metric of the issue's result shape, each either a number or null with a reason."""
    result: dict[str, Any] = dict.fromkeys(METRIC_NAMES)
    unavailable: dict[str, str] = {}
    annualised = False

    def attempt(name: str, compute: Callable[[], Any]) -> None:
        try:
            result[name] = compute()
        except m.Unavailable as exc:
            unavailable[name] = str(exc)

    values = np.array(series.values, dtype=np.float64)
    flows = np.array(series.flows, dtype=np.float64)
    attempt("mwr", lambda: m.xirr(*mwr_flows(series)))
    try:
        returns = m.daily_returns(values, flows)
    except m.Unavailable as exc:
        for name in METRIC_NAMES:
            unavailable.setdefault(name, str(exc))
        return PerformanceResult(
            metrics=result, unavailable=unavailable, total_return_annualised=False
        )

    def total() -> float:
        nonlocal annualised
        value, annualised = m.total_return(returns, start=series.dates[0], end=series.dates[-1])
        return value

    def drawdown() -> dict[str, Any]:
        dd = m.max_drawdown(returns, series.dates)
        return {
            "value": dd.value,
            "peak": _iso(dd.peak),
            "trough": _iso(dd.trough),
            "recovery": _iso(dd.recovery),
        }

    attempt("total_return", total)
    attempt("twr", lambda: m.twr(returns))
    attempt("volatility", lambda: m.volatility(returns))
    attempt("sharpe", lambda: m.sharpe(returns, risk_free_annual=risk_free_annual))
    attempt("sortino", lambda: m.sortino(returns))
    attempt("max_drawdown", drawdown)
    attempt("best_day", lambda: m.best_and_worst_day(returns)[0])
    attempt("worst_day", lambda: m.best_and_worst_day(returns)[1])
    try:
        aligned = m.aligned_returns(
            series.dates,
            m.wealth_index(returns),
            benchmark_dates,
            np.array(benchmark_closes, dtype=np.float64),
        )
    except m.Unavailable as exc:
        unavailable["beta"] = unavailable["correlation"] = str(exc)
    else:
        attempt("beta", lambda: m.beta(*aligned))
        attempt("correlation", lambda: m.correlation(*aligned))
    return PerformanceResult(
        metrics=result, unavailable=unavailable, total_return_annualised=annualised
    )


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None
