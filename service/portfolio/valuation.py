"""Valuing replayed positions at market closes: snapshot rows, pure.

A date's price is the last close on or before it (weekends, holidays and a
symbol's missing days carry the previous close); a missing price is an error,
never a zero. Stored closes are split-adjusted as of today, so a close valuing
a date before a later split is scaled back up by that split's ratio to match
the shares actually held on that date (even when the close itself is older
than a split that already took effect: its adjusted value is the right price
per post-split share).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from service.portfolio.positions import ZERO, DayState, Split, flow_between, state_on


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
    """One position valued at a close."""

    symbol: str
    quantity: Decimal
    close: Decimal
    price_date: date
    market_value: Decimal
    cost_basis: Decimal
    unrealized_pnl: Decimal


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


def value_state(
    state: DayState,
    day: date,
    *,
    prices: Mapping[str, PriceHistory],
    splits: Mapping[str, Sequence[Split]],
) -> tuple[Decimal, tuple[HoldingValue, ...]]:
    """Market value of `state`'s holdings at `day`'s closes, and each holding's detail."""
    values: list[HoldingValue] = []
    for holding in state.holdings:
        history = prices.get(holding.symbol)
        found = history.close_on_or_before(day) if history else None
        if found is None:
            raise MissingPrice(f"no close for {holding.symbol} on or before {day}")
        price_date, close = found
        close = close_for_shares_on(close, splits.get(holding.symbol, ()), day)
        market_value = holding.quantity * close
        values.append(
            HoldingValue(
                symbol=holding.symbol,
                quantity=holding.quantity,
                close=close,
                price_date=price_date,
                market_value=market_value,
                cost_basis=holding.cost_basis,
                unrealized_pnl=market_value - holding.cost_basis,
            )
        )
    return sum((v.market_value for v in values), ZERO), tuple(values)


def valuations(
    states: Sequence[DayState],
    *,
    dates: Sequence[date],
    previous: date | None,
    prices: Mapping[str, PriceHistory],
    splits: Mapping[str, Sequence[Split]],
) -> list[Valuation]:
    """A snapshot for each of `dates` (ascending) on or after inception.

    `previous` is the valuation date before `dates[0]` (the prior trading day):
    the first row's day change and net flow are measured from it.
    Raises MissingPrice when any held symbol lacks a close.
    """
    rows: list[Valuation] = []
    last_date = previous
    last_total = _total_on(states, previous, prices=prices, splits=splits)
    for day in dates:
        state = state_on(states, day)
        if state is None:
            last_date = day
            continue
        market_value, holdings = value_state(state, day, prices=prices, splits=splits)
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
    return rows


def _total_on(
    states: Sequence[DayState],
    day: date | None,
    *,
    prices: Mapping[str, PriceHistory],
    splits: Mapping[str, Sequence[Split]],
) -> Decimal:
    state = state_on(states, day) if day is not None else None
    if state is None:
        return ZERO
    market_value, _ = value_state(state, day or state.date, prices=prices, splits=splits)
    return state.cash + market_value
