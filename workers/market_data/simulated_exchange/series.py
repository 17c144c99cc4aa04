"""Deterministic daily series per symbol: the one source every simulated provider serves.

Every symbol gets its own seeded random walk over NYSE trading days since
2000, so any date range for a symbol always returns the same bars. Some
symbols pay quarterly dividends and some split once. `close` is
split-adjusted and `adjclose` also dividend-adjusted (Yahoo's semantics);
raw prices, for providers that serve them, are derived with `split_factors`.
Symbols starting with `ZZ` are unknown to every provider. Every bar, dividend and split
of a date is the same whatever `end` the series is built to.

Currencies follow the suffix, as on Yahoo: `.DE`/`.PA`/`.AS` are quoted in EUR, `.L` in
GBp (pence), an FX pair `EURUSD=X` in its second currency (a gentle walk around a
realistic level, no dividends or splits), anything else in USD.
"""

from __future__ import annotations

import bisect
import math
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np

from service.core.trading_calendar import EXCHANGE_TZ, NYSE, REGULAR_OPEN, TradingCalendar

EPOCH = date(2000, 1, 3)
UNKNOWN_PREFIX = "ZZ"
SPLIT_SPAN_DAYS = 9700
SECTORS = ("Technology", "Healthcare", "Financial Services", "Energy", "Industrials")
SUFFIX_CURRENCIES = {".DE": "EUR", ".PA": "EUR", ".AS": "EUR", ".L": "GBp"}
# Where a pair's walk starts (quote units per base unit); other pairs start at 1.
FX_LEVELS = {"EUR": 1.1, "GBP": 1.3, "CHF": 1.1, "JPY": 0.0075, "CAD": 0.75}


def is_fx_pair(symbol: str) -> bool:
    """Whether `symbol` is an FX pair (`EURUSD=X`)."""
    return len(symbol) == 8 and symbol.upper().endswith("=X") and symbol[:6].isalpha()


def price_places(symbol: str) -> int:
    """Decimal places a provider serves `symbol`'s bars with: an FX pair's small rate
    (JPYUSD=X is about 0.0075) keeps its digits, as real providers' floats do."""
    return 10 if is_fx_pair(symbol) else 4


def currency_of(symbol: str) -> str:
    """The currency `symbol` is quoted in (case matters: GBp is pence)."""
    upper = symbol.upper()
    if is_fx_pair(upper):
        return upper[3:6]
    for suffix, currency in SUFFIX_CURRENCIES.items():
        if upper.endswith(suffix):
            return currency
    return "USD"


def _fx_level(symbol: str) -> float:
    base, quote = symbol[:3].upper(), symbol[3:6].upper()
    in_usd = FX_LEVELS.get(base, 1.0)
    quote_in_usd = FX_LEVELS.get(quote, 1.0)
    return in_usd / quote_in_usd


@dataclass(frozen=True, slots=True)
class Series:
    """One symbol's full daily history since EPOCH."""

    days: tuple[date, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    adjclose: np.ndarray
    volume: np.ndarray
    dividends: dict[date, float]
    splits: dict[date, tuple[int, int]]


def symbol_seed(symbol: str) -> int:
    """A stable per-symbol seed (crc32 does not vary between processes, unlike hash())."""
    return zlib.crc32(symbol.encode())


def is_unknown(symbol: str) -> bool:
    """Whether the simulated market does not list `symbol`."""
    return symbol.upper().startswith(UNKNOWN_PREFIX)


@lru_cache(maxsize=64)
def _trading_days(end: date, calendar: TradingCalendar) -> tuple[date, ...]:
    return tuple(calendar.iter_trading_days(EPOCH, end))


@lru_cache(maxsize=64)
def _quarter_starts(end: date, calendar: TradingCalendar) -> np.ndarray:
    """Indices of the first trading day of February, May, August and November."""
    days = _trading_days(end, calendar)
    return np.array(
        [
            i
            for i in range(1, len(days))
            if days[i].month in (2, 5, 8, 11) and days[i - 1].month != days[i].month
        ],
        dtype=np.int64,
    )


def _mean_reverting(shocks: np.ndarray) -> np.ndarray:
    """x[i] = 0.99 x[i-1] + shocks[i]: a walk pulled back towards 0."""
    out = np.empty_like(shocks)
    level = 0.0
    for i, shock in enumerate(shocks.tolist()):
        level = 0.99 * level + shock
        out[i] = level
    return out


@lru_cache(maxsize=8192)
def build_series(symbol: str, end: date, calendar: TradingCalendar = NYSE) -> Series:
    """Deterministic bars for `symbol` from EPOCH to `end` (a prefix never changes)."""
    days = _trading_days(end, calendar)
    seed = symbol_seed(symbol)
    n = len(days)
    # One stream per quantity, so the first k draws (bars) never depend on n.
    draws = [np.random.default_rng([seed, k]).standard_normal(n) for k in range(5)]
    pair = is_fx_pair(symbol)
    sigma = 0.004 if pair else 0.01 + (seed % 200) / 10_000
    drift = 0.0 if pair else 0.0002 + ((seed >> 8) % 7) / 20_000
    returns = drift + sigma * draws[0]
    start_price = _fx_level(symbol) if pair else 10.0 + seed % 490
    close = start_price * np.exp(np.cumsum(returns) - returns[0])
    if pair:  # a rate wanders around its level instead of drifting away for decades
        close = start_price * np.exp(_mean_reverting(np.concatenate(([0.0], returns[1:]))))
    gap = np.exp(0.3 * sigma * draws[1])
    open_ = np.concatenate(([close[0]], close[:-1])) * gap
    high = np.maximum(open_, close) * (1 + np.abs(draws[2]) * sigma * 0.5)
    low = np.minimum(open_, close) * (1 - np.abs(draws[3]) * sigma * 0.5)
    volume = (1_000_000 * (1 + seed % 50) * np.exp(0.3 * draws[4])).astype(np.int64)

    # adjclose: each close times the product of (1 - d / prev close) over later ex-dates.
    dividends: dict[date, float] = {}
    factor_at = np.ones(n)
    if seed % 3 == 0 and not pair:
        for i in _quarter_starts(end, calendar).tolist():
            amount = round(float(close[i - 1]) * 0.004, 4)
            dividends[days[i]] = amount
            factor_at[i - 1] = 1 - amount / float(close[i - 1])
    factor = np.cumprod(factor_at[::-1])[::-1]
    splits: dict[date, tuple[int, int]] = {}
    if seed % 11 == 0 and not pair:
        # A fixed date per symbol, so a longer series never moves or adds an earlier split.
        split_day = EPOCH + timedelta(days=(seed // 11) % SPLIT_SPAN_DAYS)
        first_after = bisect.bisect_left(days, split_day)
        if 0 < first_after < n:
            splits[days[first_after]] = (2, 1)
    return Series(days, open_, high, low, close, close * factor, volume, dividends, splits)


def split_factors(series: Series) -> np.ndarray:
    """Per day, the product of the ratios of every later split (raw price = adjusted x this)."""
    factors = np.ones(len(series.days))
    for split_day, (num, den) in series.splits.items():
        for i, day in enumerate(series.days):
            if day < split_day:
                factors[i] *= num / den
    return factors


def factor_after(series: Series, day: date) -> float:
    """The product of the ratios of every split after `day`."""
    factor = 1.0
    for split_day, (num, den) in series.splits.items():
        if day < split_day:
            factor *= num / den
    return factor


def window_slice(series: Series, start: date, end: date) -> tuple[int, int]:
    """Index bounds [lo, hi) of the days inside [start, end]."""
    lo = bisect.bisect_left(series.days, start)
    hi = bisect.bisect_right(series.days, end)
    return lo, max(lo, hi)


def session_start(day: date) -> datetime:
    """09:30 New York on `day`, as Yahoo stamps daily bars."""
    return datetime.combine(day, REGULAR_OPEN, tzinfo=EXCHANGE_TZ)


@lru_cache(maxsize=16_384)
def epoch_seconds(day: date) -> int:
    """The session start of `day` in unix seconds."""
    return int(session_start(day).timestamp())


@dataclass(frozen=True, slots=True)
class LastTrade:
    """The latest regular-session price at an instant, and when it traded."""

    price: float
    time: datetime
    session: date


def intraday_price(series: Series, index: int, fraction: float) -> float:
    """Bar `index`'s price `fraction` (0..1) of the way through its session: from the open to
    the close with a deterministic wiggle, inside the bar's low and high."""
    opened, closed = float(series.open[index]), float(series.close[index])
    low, high = float(series.low[index]), float(series.high[index])
    wiggle = 0.5 * (high - low) * math.sin(math.pi * fraction) * math.sin(5 * math.pi * fraction)
    price = opened + (closed - opened) * fraction + wiggle
    return round(min(max(price, low), high), 4)


def last_trade(symbol: str, now: datetime, calendar: TradingCalendar = NYSE) -> LastTrade:
    """The last trade at `now`: a moving price while a session runs (stamped `now`), else the
    last completed session's close, stamped with that session's closing instant."""
    live = calendar.open_session(now)
    if live is None:
        day = calendar.last_completed_session(now)
        series = build_series(symbol, day, calendar)
        closed = calendar.close_at(day)
        assert closed is not None
        return LastTrade(round(float(series.close[-1]), 4), closed, series.days[-1])
    series = build_series(symbol, live, calendar)
    opened = datetime.combine(live, REGULAR_OPEN, tzinfo=EXCHANGE_TZ)
    closes = calendar.close_at(live)
    assert closes is not None
    # Whole seconds, as quotes are stamped: the price is the one at the stamp.
    stamp = now.astimezone(UTC).replace(microsecond=0)
    fraction = max(0.0, (stamp - opened) / (closes - opened))
    return LastTrade(intraday_price(series, len(series.days) - 1, fraction), stamp, live)


def company_name(symbol: str) -> str:
    """A stable, made-up company name for `symbol`."""
    return f"{symbol.title()} Holdings Inc."


def sector_of(symbol: str) -> str:
    """A stable sector for `symbol`."""
    return SECTORS[symbol_seed(symbol) % len(SECTORS)]
