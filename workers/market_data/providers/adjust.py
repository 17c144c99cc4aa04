"""Price adjustments shared by the adapters (pure).

Yahoo serves both adjusted series; Polygon serves split-adjusted bars only and
Tiingo serves raw bars with a fully adjusted close, so adapters derive the
missing series here, with Yahoo's (CRSP) method.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from workers.market_data.types import Bar, Dividend, Split


def dividend_adjusted(bars: Sequence[Bar], dividends: Sequence[Dividend]) -> list[Bar]:
    """`bars` with `adj_close` = close x prod(1 - amount / previous close) over later ex-dates.

    A dividend whose ex-date has no earlier bar in `bars` cannot be priced and is ignored,
    so callers pass bars through the latest ex-date they care about.
    """
    factors = [1.0] * len(bars)
    index = {bar.date: i for i, bar in enumerate(bars)}
    for dividend in dividends:
        i = index.get(dividend.date)
        if i is None:
            i = next((k for k, bar in enumerate(bars) if bar.date > dividend.date), None)
        if i is None or i == 0 or bars[i - 1].close <= 0:
            continue
        factor = 1 - dividend.amount / bars[i - 1].close
        for k in range(i):
            factors[k] *= factor
    return [
        Bar(
            date=bar.date,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            adj_close=round(bar.close * factor, 6),
            volume=bar.volume,
        )
        for bar, factor in zip(bars, factors, strict=True)
    ]


def split_factor_after(bar_date: date, splits: Sequence[Split]) -> float:
    """The product of the ratios of every split strictly after `bar_date`."""
    factor = 1.0
    for split in splits:
        if split.date > bar_date:
            factor *= split.numerator / split.denominator
    return factor
