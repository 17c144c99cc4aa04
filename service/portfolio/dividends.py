"""Dividends that arrive by themselves: which DIVIDEND transactions a portfolio's stored
dividends call for, and what to change so the generated ones match. Pure.

The rules (docs/METRICS.md, Dividends):
- **Entitlement.** The quantity held at the end of the day before the ex-date: BUYs and
  SELLs dated before the ex-date count, one dated on the ex-date does not. Quantities and
  the per-share amount are both in today's (split-adjusted) shares, so the cash is the
  same as the shares held then times the amount paid per share then.
- **Date.** The pay date, or the ex-date when no pay date is stored; a dividend is
  generated once that date is on or before today.
- **Amount.** Per share times quantity, rounded half-even to the cent's ten-thousandth (the
  column's 6 places); nothing when that is zero. Currency: the asset's, when known.
- **Not doubled.** A DIVIDEND the user recorded for the symbol answers the dividend with the
  latest ex-date on or before its date, when it is dated no later than that dividend's pay
  date + `HAND_MATCH_AFTER_PAY` (ex-date + `HAND_MATCH_WITHOUT_PAY` when no pay date is
  stored); that dividend is then not generated.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from service.portfolio.positions import ZERO, Split, Transaction, plain

HAND_MATCH_AFTER_PAY = timedelta(days=7)
HAND_MATCH_WITHOUT_PAY = timedelta(days=45)
_AMOUNT_PLACES = Decimal("0.000001")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredDividend:
    """A row of the `dividends` table: cash per current (split-adjusted) share."""

    symbol: str
    ex_date: date
    amount: Decimal
    pay_date: date | None = None

    @property
    def paid_on(self) -> date:
        """The date the cash arrives: the pay date, else the ex-date."""
        return self.pay_date or self.ex_date

    @property
    def hand_match_until(self) -> date:
        """The last date a hand-recorded DIVIDEND can be this dividend."""
        if self.pay_date is not None:
            return self.pay_date + HAND_MATCH_AFTER_PAY
        return self.ex_date + HAND_MATCH_WITHOUT_PAY


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratedDividend:
    """A DIVIDEND transaction generated from the dividend of `symbol` on `ex_date`."""

    symbol: str
    ex_date: date
    date: date
    amount: Decimal
    currency: str | None
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DividendChanges:
    """What to write so the generated transactions match the plan.

    `update` pairs an existing transaction id with what it should become; `delete` holds ids.
    """

    insert: tuple[GeneratedDividend, ...] = ()
    update: tuple[tuple[int, GeneratedDividend], ...] = ()
    delete: tuple[int, ...] = ()
    since: date | None = None

    def __bool__(self) -> bool:
        return bool(self.insert or self.update or self.delete)


def _factor_after(day: date, splits: Sequence[Split]) -> Decimal:
    """Today's shares per share held on `day` (splits dated after it)."""
    factor = Decimal(1)
    for split in splits:
        if split.date > day:
            factor *= split.ratio
    return factor


def held_before(
    transactions: Iterable[Transaction], splits: Sequence[Split], *, symbol: str, ex_date: date
) -> Decimal:
    """Shares of `symbol`, in today's shares, held at the end of the day before `ex_date`."""
    held = ZERO
    for tx in transactions:
        if tx.symbol != symbol or tx.date >= ex_date or tx.type not in ("BUY", "SELL"):
            continue
        quantity = tx.quantity or ZERO
        signed = quantity if tx.type == "BUY" else -quantity
        held += signed * _factor_after(tx.date, splits)
    return held


def _answered_by_hand(
    transactions: Iterable[Transaction], dividends: Sequence[StoredDividend]
) -> set[tuple[str, date]]:
    """(symbol, ex-date) of every dividend a hand-recorded DIVIDEND already answers."""
    ex_dates: dict[str, list[StoredDividend]] = defaultdict(list)
    for dividend in sorted(dividends, key=lambda d: d.ex_date):
        ex_dates[dividend.symbol].append(dividend)
    answered: set[tuple[str, date]] = set()
    for tx in transactions:
        if tx.type != "DIVIDEND" or tx.generated_ex_date is not None or tx.symbol is None:
            continue
        candidates = ex_dates.get(tx.symbol, [])
        position = bisect.bisect_right([d.ex_date for d in candidates], tx.date)
        if position and tx.date <= candidates[position - 1].hand_match_until:
            answered.add((tx.symbol, candidates[position - 1].ex_date))
    return answered


def plan_dividends(
    transactions: Sequence[Transaction],
    dividends: Sequence[StoredDividend],
    *,
    splits: Mapping[str, Sequence[Split]],
    currencies: Mapping[str, str | None],
    today: date,
) -> list[GeneratedDividend]:
    """The generated DIVIDEND transactions the portfolio's history and the stored dividends
    call for, by (symbol, ex-date)."""
    answered = _answered_by_hand(transactions, dividends)
    planned: list[GeneratedDividend] = []
    for dividend in sorted(dividends, key=lambda d: (d.symbol, d.ex_date)):
        if dividend.paid_on > today or (dividend.symbol, dividend.ex_date) in answered:
            continue
        quantity = held_before(
            transactions,
            splits.get(dividend.symbol, ()),
            symbol=dividend.symbol,
            ex_date=dividend.ex_date,
        )
        if quantity <= 0:
            continue
        amount = (dividend.amount * quantity).quantize(_AMOUNT_PLACES, ROUND_HALF_EVEN)
        if amount <= 0:
            continue
        planned.append(
            GeneratedDividend(
                symbol=dividend.symbol,
                ex_date=dividend.ex_date,
                date=dividend.paid_on,
                amount=amount,
                currency=currencies.get(dividend.symbol),
                note=f"generated: {plain(dividend.amount)} per share x {plain(quantity)} "
                f"held before the ex-date {dividend.ex_date}",
            )
        )
    return planned


def _as_generated(tx: Transaction) -> GeneratedDividend:
    assert tx.symbol is not None
    assert tx.amount is not None
    assert tx.generated_ex_date is not None
    return GeneratedDividend(
        symbol=tx.symbol,
        ex_date=tx.generated_ex_date,
        date=tx.date,
        amount=tx.amount,
        currency=tx.currency,
        note=tx.note or "",
    )


def diff_dividends(
    existing: Iterable[Transaction], planned: Iterable[GeneratedDividend]
) -> DividendChanges:
    """Inserts, updates and deletes that turn the `existing` generated transactions into
    `planned`, and the earliest date any of them touches (snapshots from it are stale)."""
    current: dict[tuple[str, date], tuple[int, GeneratedDividend]] = {}
    for tx in existing:
        if tx.generated_ex_date is not None:
            made = _as_generated(tx)
            current[(made.symbol, made.ex_date)] = (tx.id, made)
    wanted = {(p.symbol, p.ex_date): p for p in planned}
    insert = tuple(p for key, p in sorted(wanted.items()) if key not in current)
    update = tuple(
        (current[key][0], p)
        for key, p in sorted(wanted.items())
        if key in current and current[key][1] != p
    )
    gone = [current[key] for key in sorted(current) if key not in wanted]
    delete = tuple(sorted(tx_id for tx_id, _ in gone))
    touched = [p.date for p in insert]
    touched += [min(p.date, current[(p.symbol, p.ex_date)][1].date) for _, p in update]
    touched += [made.date for _, made in gone]
    return DividendChanges(
        insert=insert, update=update, delete=delete, since=min(touched, default=None)
    )
