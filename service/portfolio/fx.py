"""Currencies and exchange rates (pure): minor units, pair symbols, stored-rate lookups.

A pair is stored like any symbol, under Yahoo's spelling: `EURUSD=X` is the
number of USD per 1 EUR. A rate for a date is that date's close, or the latest
earlier close at most `MAX_RATE_AGE_DAYS` old (a weekend or a holiday);
anything older is missing, never 1.0. The only derived rates are the inverse
of a stored pair and a cross through USD from two pairs stored for the same
date. Minor units (`GBp` pence, `ZAc` cents, `ILA` agorot) are a fixed
hundredth of their major currency and differ from it only in case, so codes
are never upper-cased.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

ONE = Decimal(1)
MAX_RATE_AGE_DAYS = 4
PIVOT = "USD"
# minor unit -> (major currency, minor units per major unit)
MINOR_UNITS: dict[str, tuple[str, Decimal]] = {
    "GBp": ("GBP", Decimal(100)),
    "GBX": ("GBP", Decimal(100)),
    "ZAc": ("ZAR", Decimal(100)),
    "ILA": ("ILS", Decimal(100)),
}
PAIR_SUFFIX = "=X"


class MissingFx(LookupError):
    """Rates needed for a valuation are not stored; `missing` names each as `EURUSD 2025-03-07`."""

    def __init__(self, missing: Iterable[str]) -> None:
        self.missing = sorted(set(missing))
        super().__init__(f"missing_fx: {self.missing}")


def major(currency: str) -> tuple[str, Decimal]:
    """The major currency of `currency` and how many `currency` units make one of it."""
    return MINOR_UNITS.get(currency, (currency, ONE))


def pair_symbol(base: str, quote: str) -> str:
    """The stored symbol of the rate `quote` per 1 `base` (`EURUSD=X`)."""
    return f"{base}{quote}{PAIR_SUFFIX}"


def is_pair(symbol: str) -> bool:
    """Whether `symbol` is an FX pair (`EURUSD=X`)."""
    return len(symbol) == 8 and symbol.endswith(PAIR_SUFFIX) and symbol[:6].isalpha()


def pair_currencies(symbol: str) -> tuple[str, str]:
    """(base, quote) of a pair symbol: `EURUSD=X` -> (EUR, USD)."""
    return symbol[:3], symbol[3:6]


def pair_label(source: str, target: str) -> str:
    """How a missing rate is named: `EURUSD`."""
    return f"{source}{target}"


def needed_pairs(currencies: Iterable[str | None], *, base: str) -> list[str]:
    """The pairs to fetch so amounts in `currencies` (None = base) convert into `base`."""
    majors = {major(c)[0] for c in currencies if c is not None}
    return sorted(pair_symbol(m, base) for m in majors if m != base)


@dataclass(frozen=True, slots=True)
class RateSeries:
    """One pair's closes, dates ascending."""

    dates: tuple[date, ...]
    closes: tuple[Decimal, ...]

    def on(self, day: date) -> tuple[date, Decimal] | None:
        """The close of `day`, else the latest earlier one no older than MAX_RATE_AGE_DAYS."""
        position = bisect.bisect_right(self.dates, day)
        if not position:
            return None
        found = self.dates[position - 1]
        if day - found > timedelta(days=MAX_RATE_AGE_DAYS):
            return None
        return found, self.closes[position - 1]


@dataclass(frozen=True, slots=True)
class FxRates:
    """Stored pair closes by pair symbol; answers "how many `target` per 1 `source`"."""

    series: Mapping[str, RateSeries] = field(default_factory=dict)

    @classmethod
    def from_closes(cls, closes: Mapping[str, Iterable[tuple[date, Decimal]]]) -> FxRates:
        """Rates from (date, close) rows per pair symbol, in any order."""
        built = {}
        for symbol, rows in closes.items():
            ordered = sorted(rows)
            built[symbol] = RateSeries(tuple(d for d, _ in ordered), tuple(c for _, c in ordered))
        return cls(built)

    def _direct(self, source: str, target: str, day: date) -> tuple[date, Decimal] | None:
        found = self.series.get(pair_symbol(source, target))
        if found is not None and (hit := found.on(day)) is not None:
            return hit
        found = self.series.get(pair_symbol(target, source))
        if found is not None and (hit := found.on(day)) is not None and hit[1]:
            return hit[0], ONE / hit[1]
        return None

    def rate(self, source: str, target: str, day: date) -> Decimal | None:
        """Units of `target` per 1 unit of `source` on `day` (minor units included), or None
        when no stored pair gives it."""
        (src, src_units), (dst, dst_units) = major(source), major(target)
        factor = dst_units / src_units
        if src == dst:
            return factor
        direct = self._direct(src, dst, day)
        if direct is not None:
            return direct[1] * factor
        if PIVOT in (src, dst):
            return None
        first, second = self._direct(src, PIVOT, day), self._direct(PIVOT, dst, day)
        if first is None or second is None or first[0] != second[0]:
            return None
        return first[1] * second[1] * factor

    def to_base(self, currency: str | None, base: str, day: date) -> Decimal | None:
        """The rate turning `currency` (None = base) into `base` on `day`."""
        return ONE if currency is None else self.rate(currency, base, day)


NO_RATES = FxRates()
