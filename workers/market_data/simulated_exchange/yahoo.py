"""Yahoo-shaped bodies: the v8 chart and the v10 quoteSummary (pure functions)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from service.core.trading_calendar import NYSE, TradingCalendar
from workers.market_data.simulated_exchange.series import (
    EPOCH,
    LastTrade,
    build_series,
    company_name,
    currency_of,
    epoch_seconds,
    is_fx_pair,
    price_places,
    sector_of,
    session_start,
    window_slice,
)

RANGES = {
    "1d": 1,
    "5d": 7,
    "1mo": 31,
    "3mo": 92,
    "6mo": 183,
    "1y": 365,
    "2y": 730,
    "5y": 1826,
    "10y": 3652,
    "ytd": -1,
    "max": -2,
}


def chart_window(query: dict[str, str], today: date) -> tuple[date, date]:
    """The [start, end] a chart query asks for (`period1`/`period2` or `range`)."""
    if "period1" in query:
        start = datetime.fromtimestamp(int(query["period1"]), tz=UTC).date()
        end = (
            datetime.fromtimestamp(int(query["period2"]), tz=UTC).date()
            if "period2" in query
            else today
        )
        return max(start, EPOCH), min(end, today)
    span = RANGES.get(query.get("range", "1mo"))
    if span is None:
        raise ValueError(f"Invalid input - range={query.get('range')}")
    if span == -2:
        return EPOCH, today
    if span == -1:
        return date(today.year, 1, 1), today
    return today - timedelta(days=span), today


def _events(
    symbol: str,
    start: date,
    end: date,
    *,
    calendar: TradingCalendar = NYSE,
    withdrawn: Collection[date] = (),
) -> dict[str, dict[str, dict[str, object]]]:
    series = build_series(symbol, end, calendar)
    events: dict[str, dict[str, dict[str, object]]] = {}
    dividends = {
        d: a for d, a in series.dividends.items() if start <= d <= end and d not in withdrawn
    }
    splits = {d: r for d, r in series.splits.items() if start <= d <= end}
    if dividends:
        events["dividends"] = {
            str(epoch_seconds(d)): {"amount": a, "date": epoch_seconds(d)}
            for d, a in dividends.items()
        }
    if splits:
        events["splits"] = {
            str(epoch_seconds(d)): {
                "date": epoch_seconds(d),
                "numerator": num,
                "denominator": den,
                "splitRatio": f"{num}:{den}",
            }
            for d, (num, den) in splits.items()
        }
    return events


def _instrument_type(symbol: str) -> str:
    if is_fx_pair(symbol):
        return "CURRENCY"
    return "INDEX" if symbol.startswith("^") else "EQUITY"


def chart_payload(
    symbol: str,
    start: date,
    end: date,
    *,
    live_bar: bool,
    null_every: int = 0,
    trade: LastTrade | None = None,
    calendar: TradingCalendar = NYSE,
    withdrawn: Collection[date] = (),
) -> dict[str, object]:
    """The Yahoo v8 chart body for `symbol` over [start, end] (a pure function of its inputs).

    `live_bar` appends the running session's bar on the last bar's date, as Yahoo does
    during trading hours; `null_every` blanks every k-th bar's prices (a day without trades).
    `trade`, when given, is the meta's regular-market price and time (else the last close).
    """
    series = build_series(symbol, end, calendar)
    lo, _ = window_slice(series, start, end)
    days = series.days[lo:]
    stamps = [epoch_seconds(day) for day in days]

    places = price_places(symbol)

    def col(values: np.ndarray) -> list[float]:
        rounded: list[float] = np.round(values[lo:], places).tolist()
        return rounded

    quote: dict[str, list[Any]] = {
        "open": col(series.open),
        "high": col(series.high),
        "low": col(series.low),
        "close": col(series.close),
        "volume": series.volume[lo:].tolist(),
    }
    adjclose = col(series.adjclose)
    if null_every:
        for i in range(null_every - 1, len(days), null_every):
            for key in quote:
                quote[key][i] = None
            adjclose[i] = None  # type: ignore[call-overload]
    last_close = quote["close"][-1] if days else None
    market_time = stamps[-1] + 6 * 3600 + 1800 if stamps else None
    if live_bar and days:
        stamps.append(market_time or 0)
        for key in quote:
            quote[key].append(quote[key][-1])
        adjclose.append(adjclose[-1])
    utc_offset = session_start(end).utcoffset()
    offset = int(utc_offset.total_seconds()) if utc_offset else 0
    result: dict[str, object] = {
        "meta": {
            "currency": currency_of(symbol),
            "symbol": symbol,
            "exchangeName": "CCY" if is_fx_pair(symbol) else "NMS",
            "fullExchangeName": "NasdaqGS",
            "instrumentType": _instrument_type(symbol),
            "exchangeTimezoneName": "America/New_York",
            "timezone": "EST",
            "gmtoffset": offset,
            "regularMarketPrice": trade.price if trade else last_close,
            "regularMarketTime": int(trade.time.timestamp()) if trade else market_time,
            "priceHint": 2,
            "dataGranularity": "1d",
        },
        "timestamp": stamps,
        "indicators": {"quote": [quote], "adjclose": [{"adjclose": adjclose}]},
    }
    events = _events(symbol, start, end, calendar=calendar, withdrawn=withdrawn)
    if events:
        result["events"] = events
    return {"chart": {"result": [result], "error": None}}


def not_found_payload() -> dict[str, object]:
    """Yahoo's 404 chart body."""
    return {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }


def summary_payload(
    symbol: str, today: date, *, calendar: TradingCalendar = NYSE
) -> dict[str, object]:
    """A quoteSummary body with the price and assetProfile modules, in Yahoo's raw/fmt style."""
    series = build_series(symbol, today, calendar)
    last = round(float(series.close[-1]), 4)
    return {
        "quoteSummary": {
            "result": [
                {
                    "price": {
                        "longName": company_name(symbol),
                        "shortName": symbol.title(),
                        "currency": currency_of(symbol),
                        "exchangeName": "NasdaqGS",
                        "quoteType": _instrument_type(symbol),
                        "regularMarketPrice": {"raw": last, "fmt": f"{last:.2f}"},
                    },
                    "assetProfile": {
                        "sector": sector_of(symbol),
                        "industry": f"{sector_of(symbol)} Services",
                        "country": "United States",
                        "longBusinessSummary": f"{company_name(symbol)} is a simulated company.",
                    },
                }
            ],
            "error": None,
        }
    }


def summary_not_found_payload(symbol: str) -> dict[str, object]:
    """quoteSummary's body for an unknown symbol."""
    return {
        "quoteSummary": {
            "result": None,
            "error": {
                "code": "Not Found",
                "description": f"Quote not found for symbol: {symbol}",
            },
        }
    }


INVALID_CRUMB = {
    "finance": {"result": None, "error": {"code": "Unauthorized", "description": "Invalid Crumb"}}
}
