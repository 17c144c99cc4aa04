"""Tiingo-shaped bodies: end-of-day prices (raw plus adjusted), metadata, IEX last prices."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time

from service.core.trading_calendar import NYSE, TradingCalendar
from workers.market_data.simulated_exchange.series import (
    EPOCH,
    LastTrade,
    build_series,
    company_name,
    price_places,
    split_factors,
    window_slice,
)


def prices_payload(
    symbol: str,
    start: date,
    end: date,
    *,
    today: date,
    calendar: TradingCalendar = NYSE,
    withdrawn: Collection[date] = (),
) -> list[dict[str, object]]:
    """Daily rows: raw `close` etc., split- and dividend-adjusted `adjClose`, `divCash` as
    paid (0 on a `withdrawn` ex-date) and `splitFactor` on the split date, as Tiingo serves
    them."""
    series = build_series(symbol, today, calendar)
    factors = split_factors(series)
    lo, hi = window_slice(series, start, end)
    places = price_places(symbol)
    rows: list[dict[str, object]] = []
    for i in range(lo, hi):
        day = series.days[i]
        scale = float(factors[i])
        adj_scale = float(series.adjclose[i] / series.close[i])
        split = series.splits.get(day)
        rows.append(
            {
                "date": datetime.combine(day, time(), tzinfo=UTC).strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z"
                ),
                "open": round(float(series.open[i]) * scale, places),
                "high": round(float(series.high[i]) * scale, places),
                "low": round(float(series.low[i]) * scale, places),
                "close": round(float(series.close[i]) * scale, places),
                "volume": round(int(series.volume[i]) / scale),
                "adjOpen": round(float(series.open[i]) * adj_scale, places),
                "adjHigh": round(float(series.high[i]) * adj_scale, places),
                "adjLow": round(float(series.low[i]) * adj_scale, places),
                "adjClose": round(float(series.adjclose[i]), places),
                "adjVolume": int(series.volume[i]),
                "divCash": 0.0
                if day in withdrawn
                else round(series.dividends.get(day, 0.0) * scale, 6),
                "splitFactor": (split[0] / split[1]) if split else 1.0,
            }
        )
    return rows


def fx_prices_payload(
    symbol: str, start: date, end: date, *, today: date, calendar: TradingCalendar = NYSE
) -> list[dict[str, object]]:
    """Daily FX rows as Tiingo's FX endpoint serves them (`resampleFreq=1day`): no volume."""
    series = build_series(symbol, today, calendar)
    lo, hi = window_slice(series, start, end)
    places = price_places(symbol)
    return [
        {
            "date": datetime.combine(series.days[i], time(), tzinfo=UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            ),
            "ticker": symbol[:6].lower(),
            "open": round(float(series.open[i]), places),
            "high": round(float(series.high[i]), places),
            "low": round(float(series.low[i]), places),
            "close": round(float(series.close[i]), places),
        }
        for i in range(lo, hi)
    ]


def meta_payload(symbol: str, today: date) -> dict[str, object]:
    """Ticker metadata."""
    return {
        "ticker": symbol.lower(),
        "name": company_name(symbol),
        "exchangeCode": "NASDAQ",
        "startDate": EPOCH.isoformat(),
        "endDate": today.isoformat(),
        "description": f"{company_name(symbol)} is a simulated company.",
    }


def iex_row(
    symbol: str, today: date, trade: LastTrade, *, calendar: TradingCalendar = NYSE
) -> dict[str, object]:
    """One IEX top-of-book row: the last trade, and the close before `today`'s."""
    series = build_series(symbol, today, calendar)
    # While a session runs, the previous close is the last complete bar's.
    before = -1 if trade.session > series.days[-1] or len(series.days) < 2 else -2
    prev_close = round(float(series.close[before]), 4)
    return {
        "ticker": symbol.lower(),
        "tngoLast": trade.price,
        "last": trade.price,
        "prevClose": prev_close,
        "timestamp": trade.time.isoformat(),
    }


def not_found_payload(symbol: str) -> dict[str, object]:
    """Tiingo's 404 body."""
    return {"detail": f"Error: Ticker '{symbol}' not found"}
