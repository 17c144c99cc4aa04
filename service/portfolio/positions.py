"""Positions and cash derived from a portfolio's transactions.

Average-cost basis (fees on buys join the cost; fees on sells reduce the
proceeds), realised P&L on sells, dividends as income. Transactions on one
date apply in the order they were recorded (their id). Cash never goes
negative: a BUY or FEE larger than the cash balance implies a DEPOSIT of the
shortfall that day, counted as an external flow. A split multiplies the
quantity held by its ratio from the split date (before that day's
transactions), leaving the total cost unchanged.

Amounts are kept in the portfolio's base currency. A transaction in another
currency converts at the rate recorded on it (`fx_rate`: base units per one
unit of the major currency, so a GBp price divides by 100 first); a position
also keeps its cost in its own currency, so a sale's realised P&L splits into
a price effect and an FX effect (Portfolio Performance's split: the FX effect
is the cost sold, in the asset's currency, at the sale's rate, less that cost
in base as booked).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal, TypeVar

from service.portfolio.fx import major

TxType = Literal["BUY", "SELL", "DIVIDEND", "DEPOSIT", "WITHDRAWAL", "FEE"]
TX_TYPES: tuple[TxType, ...] = ("BUY", "SELL", "DIVIDEND", "DEPOSIT", "WITHDRAWAL", "FEE")
ZERO = Decimal(0)
T = TypeVar("T")
Day = date  # for fields declared after a field named `date`


class LedgerError(ValueError):
    """A transaction that cannot apply to the portfolio as it stands (overselling, overdrawing).

    `replay` sets `transaction_id` to the transaction that could not apply."""

    transaction_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Transaction:
    """One recorded transaction; `id` gives the recorded order within a date."""

    id: int
    type: TxType
    date: date
    symbol: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    fee: Decimal = ZERO
    currency: str | None = None
    fx_rate: Decimal | None = None
    note: str | None = None
    # The ex-date of the stored dividend this DIVIDEND was generated from; None: the user's.
    generated_ex_date: Day | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """`numerator` new shares for every `denominator` old ones, effective on `date`."""

    symbol: str
    date: date
    numerator: int
    denominator: int

    @property
    def ratio(self) -> Decimal:
        """New shares per old share."""
        return Decimal(self.numerator) / Decimal(self.denominator)


@dataclass(frozen=True, slots=True)
class Holding:
    """A position at one moment: shares held and their total cost in base; `currency` is the
    major currency it was traded in (None: the base) and `local_cost` its cost in that."""

    symbol: str
    quantity: Decimal
    cost_basis: Decimal
    currency: str | None = None
    local_cost: Decimal | None = None

    @property
    def cost_in_own_currency(self) -> Decimal:
        """Total cost in the currency it was traded in."""
        return self.cost_basis if self.local_cost is None else self.local_cost

    @property
    def average_cost(self) -> Decimal:
        """Cost per share (zero for an empty position)."""
        return self.cost_basis / self.quantity if self.quantity else ZERO


@dataclass(frozen=True, slots=True, kw_only=True)
class DayState:
    """The portfolio at the end of `date`, and the external flow that happened that date."""

    date: date
    cash: Decimal
    holdings: tuple[Holding, ...]
    realized_pnl: Decimal
    income: Decimal
    fees: Decimal
    net_invested: Decimal
    external_flow: Decimal
    implicit_deposits: Decimal
    realized_fx_pnl: Decimal = ZERO


@dataclass(slots=True)
class Ledger:
    """Mutable running state while replaying; use `replay` rather than this directly."""

    base: str | None = None
    cash: Decimal = ZERO
    positions: dict[str, Holding] = field(default_factory=dict)
    realized_pnl: Decimal = ZERO
    realized_fx_pnl: Decimal = ZERO
    income: Decimal = ZERO
    fees: Decimal = ZERO
    net_invested: Decimal = ZERO
    day_flow: Decimal = ZERO
    day_implicit: Decimal = ZERO

    def apply_split(self, split: Split) -> None:
        """Multiply the shares held by the split ratio; the total cost is unchanged."""
        held = self.positions.get(split.symbol)
        if held is not None:
            self.positions[split.symbol] = Holding(
                held.symbol,
                held.quantity * split.ratio,
                held.cost_basis,
                held.currency,
                held.local_cost,
            )

    def _rate(self, tx: Transaction) -> tuple[str | None, Decimal, Decimal]:
        """(major currency or None for base, units per major, base per major) of `tx`."""
        if tx.currency is None:
            return None, Decimal(1), Decimal(1)
        currency, units = major(tx.currency)
        if currency == self.base:
            return None, units, Decimal(1)
        rate = _required(tx.fx_rate, tx, f"fx_rate (it is in {tx.currency})")
        return currency, units, rate

    def _base(self, tx: Transaction, value: Decimal) -> Decimal:
        _, units, rate = self._rate(tx)
        return value / units * rate

    def apply(self, tx: Transaction) -> None:
        """Apply one transaction, raising LedgerError when it cannot apply."""
        if tx.type == "BUY":
            self._buy(tx)
        elif tx.type == "SELL":
            self._sell(tx)
        elif tx.type == "DIVIDEND":
            amount = self._base(tx, _required(tx.amount, tx, "amount"))
            fee = self._base(tx, tx.fee)
            self.cash += amount
            self._debit(fee)  # a fee above the dividend must not overdraw
            self.income += amount - fee
            self.fees += fee
        elif tx.type == "DEPOSIT":
            amount = self._base(tx, _required(tx.amount, tx, "amount"))
            fee = self._base(tx, tx.fee)
            self._flow(amount)
            self._debit(fee)
            self.fees += fee
        elif tx.type == "WITHDRAWAL":
            fee = self._base(tx, tx.fee)
            amount = self._base(tx, _required(tx.amount, tx, "amount")) + fee
            if amount > self.cash:
                raise LedgerError(
                    f"withdrawal of {plain(amount)} on {tx.date} exceeds the cash balance "
                    f"{plain(self.cash)}"
                )
            self.cash -= fee
            self.fees += fee
            self._flow(-(amount - fee))
        else:
            amount = self._base(tx, _required(tx.amount, tx, "amount") + tx.fee)
            self._debit(amount)
            self.fees += amount

    def _held(self, tx: Transaction, symbol: str, currency: str | None) -> Holding | None:
        held = self.positions.get(symbol)
        if held is not None and held.currency != currency:
            raise LedgerError(
                f"{tx.type} of {symbol} on {tx.date} is in {currency or self.base or 'base'} "
                f"but the position was traded in {held.currency or self.base or 'base'}"
            )
        return held

    def _buy(self, tx: Transaction) -> None:
        symbol = _required(tx.symbol, tx, "symbol")
        quantity = _required(tx.quantity, tx, "quantity")
        currency, units, rate = self._rate(tx)
        local = (quantity * _required(tx.price, tx, "price") + tx.fee) / units
        cost = local * rate
        self._debit(cost)
        self.fees += tx.fee / units * rate
        held = self._held(tx, symbol, currency) or Holding(symbol, ZERO, ZERO, currency, ZERO)
        self.positions[symbol] = Holding(
            symbol,
            held.quantity + quantity,
            held.cost_basis + cost,
            currency,
            held.cost_in_own_currency + local,
        )

    def _sell(self, tx: Transaction) -> None:
        symbol = _required(tx.symbol, tx, "symbol")
        quantity = _required(tx.quantity, tx, "quantity")
        currency, units, rate = self._rate(tx)
        held = self._held(tx, symbol, currency)
        if held is None or quantity > held.quantity:
            owned = held.quantity if held else ZERO
            raise LedgerError(
                f"cannot sell {plain(quantity)} {symbol} on {tx.date}: only {plain(owned)} held"
            )
        local_proceeds = (quantity * _required(tx.price, tx, "price") - tx.fee) / units
        proceeds = local_proceeds * rate
        local_cost = held.cost_in_own_currency
        if quantity == held.quantity:
            cost_sold, local_sold = held.cost_basis, local_cost
            del self.positions[symbol]
        else:
            cost_sold = held.cost_basis * quantity / held.quantity
            local_sold = local_cost * quantity / held.quantity
            self.positions[symbol] = Holding(
                symbol,
                held.quantity - quantity,
                held.cost_basis - cost_sold,
                currency,
                local_cost - local_sold,
            )
        self.realized_pnl += proceeds - cost_sold
        self.realized_fx_pnl += local_sold * rate - cost_sold
        self.fees += tx.fee / units * rate
        self.cash += proceeds
        if self.cash < 0:  # a fee larger than the proceeds
            self._debit(ZERO)

    def _flow(self, amount: Decimal) -> None:
        self.cash += amount
        self.net_invested += amount
        self.day_flow += amount

    def _debit(self, amount: Decimal) -> None:
        shortfall = amount - self.cash
        if shortfall > 0:
            self._flow(shortfall)
            self.day_implicit += shortfall
        self.cash -= amount

    def close_day(self, day: date) -> DayState:
        """Freeze the state at the end of `day` and reset the day's flow counters."""
        state = DayState(
            date=day,
            cash=self.cash,
            holdings=tuple(sorted(self.positions.values(), key=lambda h: h.symbol)),
            realized_pnl=self.realized_pnl,
            income=self.income,
            fees=self.fees,
            net_invested=self.net_invested,
            external_flow=self.day_flow,
            implicit_deposits=self.day_implicit,
            realized_fx_pnl=self.realized_fx_pnl,
        )
        self.day_flow = ZERO
        self.day_implicit = ZERO
        return state


def _required(value: T | None, tx: Transaction, name: str) -> T:
    if value is None:
        raise LedgerError(f"{tx.type} on {tx.date} needs {name}")
    return value


def plain(value: Decimal) -> str:
    """A Decimal without trailing zeros or exponent, for messages."""
    return format(value.normalize(), "f")


def replay(
    transactions: Iterable[Transaction], splits: Iterable[Split] = (), *, base: str | None = None
) -> list[DayState]:
    """The end-of-day state for every date with a transaction or a split of a held symbol.

    Transactions sort by (date, id); a split applies at the start of its date. A transaction
    in a currency other than `base` needs its `fx_rate`.
    """
    ordered = sorted(transactions, key=lambda tx: (tx.date, tx.id))
    if not ordered:
        return []
    first = ordered[0].date
    by_date: dict[date, list[Split]] = {}
    for split in splits:
        if split.date > first:
            by_date.setdefault(split.date, []).append(split)
    days = sorted({tx.date for tx in ordered} | set(by_date))
    ledger = Ledger(base=base)
    states: list[DayState] = []
    index = 0
    for day in days:
        touched = False
        for split in by_date.get(day, ()):
            touched = touched or split.symbol in ledger.positions
            ledger.apply_split(split)
        while index < len(ordered) and ordered[index].date == day:
            try:
                ledger.apply(ordered[index])
            except LedgerError as exc:
                exc.transaction_id = ordered[index].id
                raise
            index += 1
            touched = True
        if touched:
            states.append(ledger.close_day(day))
    return states


def state_on(states: Sequence[DayState], day: date) -> DayState | None:
    """The state at the end of `day` (the latest one on or before it), None before inception."""
    position = bisect.bisect_right([state.date for state in states], day)
    return states[position - 1] if position else None


def flow_between(states: Sequence[DayState], after: date | None, through: date) -> Decimal:
    """External flows dated in (after, through]; `after=None` counts from inception."""
    return sum(
        (
            s.external_flow
            for s in states
            if (after is None or s.date > after) and s.date <= through
        ),
        ZERO,
    )
