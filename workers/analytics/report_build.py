"""The portfolio report's content (pure): holdings with weights, allocation, metrics, series."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from workers.analytics.metrics import wealth_index
from workers.analytics.performance import DailySeries


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetInfo:
    """What the report shows about a symbol beyond its price."""

    name: str | None
    asset_type: str | None
    sector: str | None


def holdings_with_weights(
    holdings: Sequence[Mapping[str, Any]], *, cash: float, assets: Mapping[str, AssetInfo]
) -> list[dict[str, Any]]:
    """Each holding with its weight in the total (cash included), largest first."""
    total = cash + sum(float(h["market_value"]) for h in holdings)
    rows = []
    for holding in holdings:
        info = assets.get(holding["symbol"], AssetInfo(name=None, asset_type=None, sector=None))
        value = float(holding["market_value"])
        rows.append(
            {
                **holding,
                "name": info.name,
                "asset_type": info.asset_type or "Unclassified",
                "sector": info.sector or "Unclassified",
                "weight": value / total if total else None,
            }
        )
    return sorted(rows, key=lambda row: -float(row["market_value"]))


def allocation(
    holdings: Sequence[Mapping[str, Any]], *, cash: float, key: str
) -> list[dict[str, Any]]:
    """Value and weight per `key` (asset_type or sector), cash as its own line."""
    buckets: dict[str, float] = defaultdict(float)
    for holding in holdings:
        buckets[str(holding[key])] += float(holding["market_value"])
    if cash:
        buckets["Cash"] += cash
    total = sum(buckets.values())
    return [
        {"name": name, "value": value, "weight": value / total if total else None}
        for name, value in sorted(buckets.items(), key=lambda item: -item[1])
    ]


def value_series(
    series: DailySeries, *, benchmark_dates: Sequence[date], benchmark_closes: Sequence[float]
) -> list[dict[str, Any]]:
    """Per day: value, flow, the TWR growth of 1, its drawdown, and the benchmark's growth of 1
    (from the first date both have; null on days the benchmark lacks)."""
    if len(series.dates) < 1:
        return []
    values = np.array(series.values, dtype=np.float64)
    flows = np.array(series.flows, dtype=np.float64)
    if len(values) > 1:
        start = values[:-1] + flows[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = np.where(start > 0, values[1:] / np.where(start > 0, start, 1.0) - 1.0, 0.0)
    else:
        returns = np.array([], dtype=np.float64)
    wealth = wealth_index(returns)
    drawdown = wealth / np.maximum.accumulate(wealth) - 1.0
    closes = dict(zip(benchmark_dates, benchmark_closes, strict=True))
    first = next((closes[d] for d in series.dates if d in closes), None)
    return [
        {
            "date": day.isoformat(),
            "value": float(values[i]),
            "net_flow": float(flows[i]),
            "growth": float(wealth[i]),
            "drawdown": float(drawdown[i]),
            "benchmark_growth": closes[day] / first if first and day in closes else None,
        }
        for i, day in enumerate(series.dates)
    ]


def build_report(
    *,
    portfolio: Mapping[str, Any],
    performance: Mapping[str, Any],
    latest: Mapping[str, Any] | None,
    series: DailySeries | None,
    assets: Mapping[str, AssetInfo],
    benchmark_dates: Sequence[date],
    benchmark_closes: Sequence[float],
    missing_fx: Collection[str] = (),
) -> dict[str, Any]:
    """The whole JSON report; `missing_fx` names the rates (`EURUSD 2025-03-07`) whose
    absence left metrics unavailable."""
    cash = float(latest["cash"]) if latest else 0.0
    holdings = holdings_with_weights(latest["holdings"] if latest else [], cash=cash, assets=assets)
    return {
        "portfolio": dict(portfolio),
        "start": performance["start"],
        "end": performance["end"],
        "as_of": latest["date"] if latest else None,
        "total_value": float(latest["total_value"]) if latest else None,
        "cash": cash,
        "performance": dict(performance),
        "missing_fx": sorted(missing_fx),
        "holdings": holdings,
        "allocation": {
            "asset_type": allocation(holdings, cash=cash, key="asset_type"),
            "sector": allocation(holdings, cash=cash, key="sector"),
        },
        "series": value_series(
            series, benchmark_dates=benchmark_dates, benchmark_closes=benchmark_closes
        )
        if series
        else [],
    }
