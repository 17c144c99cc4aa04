"""Polygon-shaped bodies: aggregates, grouped daily, dividends, splits, ticker details."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, time, timedelta

from service.core.trading_calendar import EXCHANGE_TZ, NYSE, TradingCalendar
from workers.market_data.simulated_exchange.series import (
    build_series,
    company_name,
    currency_of,
    factor_after,
    is_unknown,
    price_places,
    split_factors,
    window_slice,
)


def _millis(day: date) -> int:
    """Polygon stamps a daily bar at the start of its window: midnight New York."""
    return int(datetime.combine(day, time(), tzinfo=EXCHANGE_TZ).timestamp() * 1000)


def aggs_rows(
    symbol: str,
    start: date,
    end: date,
    *,
    adjusted: bool,
    today: date,
    calendar: TradingCalendar = NYSE,
) -> list[dict[str, object]]:
    """Daily aggregates over [start, end]; `adjusted` means split-adjusted (not dividends)."""
    series = build_series(symbol, today, calendar)
    lo, hi = window_slice(series, start, end)
    factors = split_factors(series) if not adjusted else None
    places = price_places(symbol)
    rows: list[dict[str, object]] = []
    for i in range(lo, hi):
        scale = float(factors[i]) if factors is not None else 1.0
        rows.append(
            {
                "o": round(float(series.open[i]) * scale, places),
                "h": round(float(series.high[i]) * scale, places),
                "l": round(float(series.low[i]) * scale, places),
                "c": round(float(series.close[i]) * scale, places),
                "v": float(int(series.volume[i]) / scale),
                "vw": round(float(series.close[i]) * scale, places),
                "t": _millis(series.days[i]),
                "n": 1000,
            }
        )
    return rows


def aggs_payload(
    symbol: str, rows: list[dict[str, object]], *, adjusted: bool, next_url: str | None
) -> dict[str, object]:
    """The aggregates envelope; an unknown ticker is an OK answer with no results."""
    body: dict[str, object] = {
        "ticker": symbol,
        "queryCount": len(rows),
        "resultsCount": len(rows),
        "adjusted": adjusted,
        "status": "OK",
        "request_id": "sim",
    }
    if rows:
        body["results"] = rows
    if next_url:
        body["next_url"] = next_url
    return body


def grouped_payload(
    symbols: list[str], day: date, *, today: date, calendar: TradingCalendar = NYSE
) -> dict[str, object]:
    """Grouped daily for `day`: one split-adjusted bar per listed symbol that traded."""
    results: list[dict[str, object]] = []
    for symbol in symbols:
        if is_unknown(symbol):
            continue
        rows = aggs_rows(symbol, day, day, adjusted=True, today=today, calendar=calendar)
        results.extend({"T": symbol, **row} for row in rows)
    body: dict[str, object] = {
        "queryCount": len(results),
        "resultsCount": len(results),
        "adjusted": True,
        "status": "OK",
        "request_id": "sim",
    }
    if results:
        body["results"] = results
    return body


PAY_AFTER_WEEKDAYS = 5


def pay_date_for(ex_date: date) -> date:
    """The simulated pay date: `PAY_AFTER_WEEKDAYS` weekdays after the ex-date."""
    day, left = ex_date, PAY_AFTER_WEEKDAYS
    while left:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


def dividends_payload(
    symbol: str,
    since: date | None,
    *,
    today: date,
    calendar: TradingCalendar = NYSE,
    withdrawn: Collection[date] = (),
) -> dict[str, object]:
    """Dividends as Polygon reports them: the cash amount actually paid (not split-adjusted)
    and a pay date; ex-dates in `withdrawn` are left out."""
    series = build_series(symbol, today, calendar)
    rows = [
        {
            "ticker": symbol,
            "ex_dividend_date": day.isoformat(),
            "pay_date": pay_date_for(day).isoformat(),
            "cash_amount": round(amount * factor_after(series, day), 6),
            "dividend_type": "CD",
            "frequency": 4,
        }
        for day, amount in sorted(series.dividends.items(), reverse=True)
        if (since is None or day >= since) and day not in withdrawn
    ]
    return {"results": rows, "status": "OK", "request_id": "sim"}


def splits_payload(
    symbol: str, since: date | None, *, today: date, calendar: TradingCalendar = NYSE
) -> dict[str, object]:
    """Splits: `split_to` new shares for every `split_from` old ones."""
    series = build_series(symbol, today, calendar)
    rows = [
        {
            "ticker": symbol,
            "execution_date": day.isoformat(),
            "split_from": den,
            "split_to": num,
        }
        for day, (num, den) in sorted(series.splits.items(), reverse=True)
        if since is None or day >= since
    ]
    return {"results": rows, "status": "OK", "request_id": "sim"}


def ticker_payload(symbol: str) -> dict[str, object]:
    """Ticker details."""
    return {
        "results": {
            "ticker": symbol,
            "name": company_name(symbol),
            "market": "stocks",
            "locale": "us",
            "primary_exchange": "XNAS",
            "type": "CS",
            "currency_name": currency_of(symbol).lower(),
            "sic_description": "SERVICES-PREPACKAGED SOFTWARE",
            "description": f"{company_name(symbol)} is a simulated company.",
        },
        "status": "OK",
        "request_id": "sim",
    }


def error_payload(status: str, message: str) -> dict[str, object]:
    """Polygon's error envelope."""
    return {"status": status, "request_id": "sim", "error": message}
