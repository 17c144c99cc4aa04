"""Valuing replayed positions at market closes: snapshot rows, pure.

A date's price is the last close on or before it (weekends, holidays and a
symbol's missing days carry the previous close); a missing price is an error,
never a zero. Stored closes are split-adjusted as of today, so a close valuing
a date before a later split is scaled back up by that split's ratio to match
the shares actually held on that date (even when the close itself is older
than a split that already took effect: its adjusted value is the right price
per post-split share).

Values are in the portfolio's base currency: a close in the asset's currency
(`GBp` divided by 100 first) is multiplied by that date's stored rate
(`service.portfolio.fx`). A missing rate makes the valuation fail with every
missing pair and date listed (`MissingFx`), never a silent 1.0.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from service.portfolio.fx import NO_RATES, FxRates, MissingFx, major, pair_label
from service.portfolio.positions import (
    ZERO,
    DayState,
    Holding,
    Split,
    flow_between,
    state_on,
)


class MissingPrice(LookupError):
    """A held symbol has no close on or before the valuation date."""


@dataclass(frozen=True, slots=True)
class PriceHistory:
    """One symbol's closes, dates ascending."""

    dates: tuple[date, ...]
    closes: tuple[Decimal, ...]

    def close_on_or_before(self, day: date) -> tuple[date, Decimal] | None:
        """The latest (date, close) not after `day`, or None if there is none."""
        position = bisect.bisect_right(self.dates, day)
        if not position:
            return None
        return self.dates[position - 1], self.closes[position - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldingValue:
    """One position valued at a close: `close` in the asset's `currency`, the money in base
    (`fx_rate` base per unit of `currency`); `unrealized_fx_pnl` is the FX part of the P&L."""

    symbol: str
    quantity: Decimal
    close: Decimal
    price_date: date
    market_value: Decimal
    cost_basis: Decimal
    unrealized_pnl: Decimal
    currency: str | None = None
    fx_rate: Decimal = Decimal(1)
    unrealized_fx_pnl: Decimal = ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class Currencies:
    """What converting into the base currency needs: the base, each symbol's quote currency
    (None when unknown: the currency it was traded in), and the stored rates."""

    base: str | None = None
    of_symbol: Mapping[str, str] = field(default_factory=dict)
    rates: FxRates = NO_RATES

    def price_currency(self, holding: Holding) -> str | None:
        """The currency `holding`'s closes are in (None: the base currency)."""
        currency = self.of_symbol.get(holding.symbol) or holding.currency
        return None if currency is None or currency == self.base else currency

    def to_base(self, currency: str | None, day: date) -> Decimal | None:
        """The rate from `currency` (None: base) into base on `day`, None when missing."""
        if currency is None or self.base is None:
            return Decimal(1) if currency is None else None
        return self.rates.rate(currency, self.base, day)

    def missing(self, currency: str, day: date) -> str:
        """How a missing rate is listed: `EURUSD 2025-03-07`."""
        return f"{pair_label(major(currency)[0], self.base or '?')} {day.isoformat()}"


BASE_ONLY = Currencies()


@dataclass(frozen=True, slots=True, kw_only=True)
class Valuation:
    """A portfolio's snapshot for one date."""

    date: date
    cash: Decimal
    market_value: Decimal
    total_value: Decimal
    cost_basis: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    income: Decimal
    fees: Decimal
    net_invested: Decimal
    net_flow: Decimal
    day_change: Decimal
    holdings: tuple[HoldingValue, ...]


def split_factor_after(splits: Sequence[Split], day: date) -> Decimal:
    """The product of the ratios of splits dated after `day` (1 when none)."""
    factor = Decimal(1)
    for split in splits:
        if split.date > day:
            factor *= split.ratio
    return factor


def close_for_shares_on(close: Decimal, splits: Sequence[Split], day: date) -> Decimal:
    """A stored (split-adjusted as of today) close as the price of a share held on `day`.

    The shares held on `day` reflect every split up to `day`, whatever the close's own date.
    """
    return close * split_factor_after(splits, day)


def value_holding(
    holding: Holding,
    day: date,
    close: Decimal,
    *,
    price_date: date,
    currencies: Currencies,
) -> HoldingValue | str:
    """`holding` valued at `close` (in the asset's currency) on `day`, or the missing rate."""
    currency = currencies.price_currency(holding)
    rate = currencies.to_base(currency, day)
    if rate is None:
        return currencies.missing(currency or "", day)
    market_value = holding.quantity * close * rate
    fx_pnl = ZERO
    if holding.currency is not None:
        own_rate = currencies.to_base(holding.currency, day)
        if own_rate is None:
            return currencies.missing(holding.currency, day)
        fx_pnl = holding.cost_in_own_currency * own_rate - holding.cost_basis
    return HoldingValue(
        symbol=holding.symbol,
        quantity=holding.quantity,
        close=close,
        price_date=price_date,
        market_value=market_value,
        cost_basis=holding.cost_basis,
        unrealized_pnl=market_value - holding.cost_basis,
        currency=currency or currencies.base,
        fx_rate=rate,
        unrealized_fx_pnl=fx_pnl,
    )


def value_state(
    state: DayState,
    day: date,
    *,
    prices: Mapping[str, PriceHistory],
    splits: Mapping[str, Sequence[Split]],
    currencies: Currencies = BASE_ONLY,
) -> tuple[Decimal, tuple[HoldingValue, ...]]:
    """Market value in base of `state`'s holdings at `day`'s closes, and each holding's
    detail; raises MissingFx naming every rate it lacked."""
    values: list[HoldingValue] = []
    missing: list[str] = []
    for holding in state.holdings:
        history = prices.get(holding.symbol)
        found = history.close_on_or_before(day) if history else None
        if found is None:
            raise MissingPrice(f"no close for {holding.symbol} on or before {day}")
        price_date, close = found
        close = close_for_shares_on(close, splits.get(holding.symbol, ()), day)
        valued = value_holding(holding, day, close, price_date=price_date, currencies=currencies)
        if isinstance(valued, str):
            missing.append(valued)
        else:
            values.append(valued)
    if missing:
        raise MissingFx(missing)
    return sum((v.market_value for v in values), ZERO), tuple(values)


def valuations(
    states: Sequence[DayState],
    *,
    dates: Sequence[date],
    previous: date | None,
    prices: Mapping[str, PriceHistory],
    splits: Mapping[str, Sequence[Split]],
    currencies: Currencies = BASE_ONLY,
) -> list[Valuation]:
    """A snapshot for each of `dates` (ascending) on or after inception.

    `previous` is the valuation date before `dates[0]` (the prior trading day):
    the first row's day change and net flow are measured from it.
    Raises MissingPrice when any held symbol lacks a close, and MissingFx listing every
    rate missing on any of the dates.
    """
    rows: list[Valuation] = []
    missing: set[str] = set()
    last_date = previous
    try:
        last_total = _total_on(
            states, previous, prices=prices, splits=splits, currencies=currencies
        )
    except MissingFx as exc:
        missing.update(exc.missing)
        last_total = ZERO
    for day in dates:
        state = state_on(states, day)
        if state is None:
            last_date = day
            continue
        try:
            market_value, holdings = value_state(
                state, day, prices=prices, splits=splits, currencies=currencies
            )
        except MissingFx as exc:
            missing.update(exc.missing)
            last_date = day
            continue
        total = state.cash + market_value
        flow = flow_between(states, last_date, day)
        cost_basis = sum((h.cost_basis for h in holdings), ZERO)
        rows.append(
            Valuation(
                date=day,
                cash=state.cash,
                market_value=market_value,
                total_value=total,
                cost_basis=cost_basis,
                unrealized_pnl=market_value - cost_basis,
                realized_pnl=state.realized_pnl,
                income=state.income,
                fees=state.fees,
                net_invested=state.net_invested,
                net_flow=flow,
                day_change=total - last_total - flow,
                holdings=holdings,
            )
        )
        last_date, last_total = day, total
    if missing:
        raise MissingFx(missing)
    return rows


def _total_on(
    states: Sequence[DayState],
    day: date | None,
    *,
    prices: Mapping[str, PriceHistory],
    splits: Mapping[str, Sequence[Split]],
    currencies: Currencies,
) -> Decimal:
    state = state_on(states, day) if day is not None else None
    if state is None:
        return ZERO
    market_value, _ = value_state(
        state, day or state.date, prices=prices, splits=splits, currencies=currencies
    )
    return state.cash + market_value
