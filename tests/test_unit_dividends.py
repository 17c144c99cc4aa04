"""The auto-dividend planner: entitlement, dates, hand-recorded matches and the diff."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D  # noqa: N817 - short for dense tables

import pytest

from service.portfolio.dividends import (
    DividendChanges,
    GeneratedDividend,
    StoredDividend,
    diff_dividends,
    plan_dividends,
)
from service.portfolio.positions import Split, Transaction, TxType

TODAY = date(2026, 11, 18)
EX = date(2026, 8, 3)


def tx(
    kind: TxType,
    day: str,
    quantity: str | None = None,
    *,
    amount: str | None = None,
    tx_id: int = 0,
    symbol: str = "DIV",
    generated_ex: str | None = None,
    note: str | None = None,
    currency: str | None = None,
) -> Transaction:
    return Transaction(
        id=tx_id,
        type=kind,
        date=date.fromisoformat(day),
        symbol=symbol,
        quantity=D(quantity) if quantity else None,
        price=D(1) if kind in ("BUY", "SELL") else None,
        amount=D(amount) if amount else None,
        currency=currency,
        note=note,
        generated_ex_date=date.fromisoformat(generated_ex) if generated_ex else None,
    )


def dividend(ex: str = "2026-08-03", amount: str = "0.5", pay: str | None = None) -> StoredDividend:
    return StoredDividend(
        symbol="DIV",
        ex_date=date.fromisoformat(ex),
        amount=D(amount),
        pay_date=date.fromisoformat(pay) if pay else None,
    )


def plan(
    transactions: list[Transaction],
    dividends: list[StoredDividend],
    *,
    splits: list[Split] | None = None,
    today: date = TODAY,
) -> list[tuple[str, str]]:
    """(date, amount) of each planned dividend."""
    return [
        (p.date.isoformat(), format(p.amount.normalize(), "f"))
        for p in plan_dividends(
            transactions,
            dividends,
            splits={"DIV": splits or []},
            currencies={"DIV": "USD"},
            today=today,
        )
    ]


class TestEntitlement:
    @pytest.mark.parametrize(
        ("transactions", "expected"),
        [
            pytest.param([tx("BUY", "2026-07-01", "10")], [("2026-08-03", "5")], id="held"),
            pytest.param([tx("BUY", "2026-08-03", "10")], [], id="bought-on-ex-date"),
            pytest.param(
                [tx("BUY", "2026-07-31", "10")], [("2026-08-03", "5")], id="bought-day-before"
            ),
            pytest.param(
                [tx("BUY", "2026-07-01", "10"), tx("SELL", "2026-08-03", "10")],
                [("2026-08-03", "5")],
                id="sold-on-ex-date-still-paid",
            ),
            pytest.param(
                [tx("BUY", "2026-07-01", "10"), tx("SELL", "2026-07-31", "4")],
                [("2026-08-03", "3")],
                id="partly-sold-before",
            ),
            pytest.param(
                [tx("BUY", "2026-07-01", "10"), tx("SELL", "2026-07-31", "10")],
                [],
                id="sold-out-before",
            ),
            pytest.param([tx("BUY", "2026-09-01", "10")], [], id="bought-after"),
            pytest.param(
                [tx("BUY", "2026-07-01", "3", symbol="OTHER")], [], id="other-symbol-only"
            ),
        ],
    )
    def test_quantity_at_the_end_of_the_day_before_the_ex_date(
        self, transactions: list[Transaction], expected: list[tuple[str, str]]
    ) -> None:
        """The quantity paid is the position at the end of the day before the ex-date."""
        assert plan(transactions, [dividend()]) == expected

    def test_later_split_counts_in_todays_shares(self) -> None:
        """Shares bought before a later 2:1 split count twice against a per-current-share
        amount, so the cash equals the shares held then times the amount paid then."""
        split = Split(symbol="DIV", date=date(2026, 9, 1), numerator=2, denominator=1)
        assert plan([tx("BUY", "2026-07-01", "10")], [dividend(amount="0.25")], splits=[split]) == [
            ("2026-08-03", "5")
        ]

    @pytest.mark.parametrize(
        ("quantity", "per_share", "expected"),
        [
            ("3", "0.33333333", [("2026-08-03", "1")]),
            ("1", "0.12345675", [("2026-08-03", "0.123457")]),
            ("2", "0.00000025", []),
        ],
    )
    def test_amount_rounds_to_six_places(
        self, quantity: str, per_share: str, expected: list[tuple[str, str]]
    ) -> None:
        """Per share times quantity rounds half-even to the column's six places, and a
        dividend that rounds to nothing is not generated."""
        assert plan([tx("BUY", "2026-07-01", quantity)], [dividend(amount=per_share)]) == expected


class TestDates:
    @pytest.mark.parametrize(
        ("pay", "today", "expected"),
        [
            pytest.param(None, TODAY, [("2026-08-03", "5")], id="no-pay-date-uses-ex-date"),
            pytest.param("2026-08-20", TODAY, [("2026-08-20", "5")], id="pay-date"),
            pytest.param("2026-12-01", TODAY, [], id="pay-date-still-ahead"),
            pytest.param(None, date(2026, 8, 2), [], id="ex-date-still-ahead"),
            pytest.param("2026-08-20", date(2026, 8, 20), [("2026-08-20", "5")], id="paid-today"),
        ],
    )
    def test_dated_on_the_pay_date_once_it_has_come(
        self, pay: str | None, today: date, expected: list[tuple[str, str]]
    ) -> None:
        """A dividend is dated on its pay date (else its ex-date) and appears once that date
        is on or before today."""
        assert plan([tx("BUY", "2026-07-01", "10")], [dividend(pay=pay)], today=today) == expected


class TestHandRecorded:
    @pytest.mark.parametrize(
        ("hand_date", "pay", "generated"),
        [
            pytest.param("2026-08-03", None, False, id="on-ex-date"),
            pytest.param("2026-09-17", None, False, id="ex-date-plus-45"),
            pytest.param("2026-09-18", None, True, id="ex-date-plus-46"),
            pytest.param("2026-08-27", "2026-08-20", False, id="pay-date-plus-7"),
            pytest.param("2026-08-28", "2026-08-20", True, id="pay-date-plus-8"),
            pytest.param("2026-08-02", None, True, id="before-ex-date"),
        ],
    )
    def test_a_hand_recorded_dividend_is_not_doubled(
        self, hand_date: str, pay: str | None, *, generated: bool
    ) -> None:
        """A user's DIVIDEND of the symbol from the ex-date through the pay date + 7 days
        (ex-date + 45 without a pay date) answers that dividend, so none is generated."""
        transactions = [tx("BUY", "2026-07-01", "10"), tx("DIVIDEND", hand_date, amount="5")]
        assert bool(plan(transactions, [dividend(pay=pay)])) is generated

    def test_a_hand_dividend_answers_only_the_latest_ex_date_before_it(self) -> None:
        """With monthly ex-dates, a hand dividend answers the latest ex-date on or before
        its date, not an earlier one whose window also covers it."""
        transactions = [tx("BUY", "2026-06-01", "10"), tx("DIVIDEND", "2026-08-05", amount="5")]
        dividends = [dividend(ex="2026-07-01"), dividend(ex="2026-08-03")]
        assert plan(transactions, dividends) == [("2026-07-01", "5")]

    def test_another_symbols_dividend_does_not_answer(self) -> None:
        """A hand dividend of another symbol leaves this one generated."""
        transactions = [
            tx("BUY", "2026-07-01", "10"),
            tx("DIVIDEND", "2026-08-03", amount="5", symbol="OTHER"),
        ]
        assert plan(transactions, [dividend()]) == [("2026-08-03", "5")]

    def test_a_generated_dividend_does_not_answer_itself(self) -> None:
        """An already generated DIVIDEND is not taken for a hand-recorded one."""
        transactions = [
            tx("BUY", "2026-07-01", "10"),
            tx("DIVIDEND", "2026-08-03", amount="5", generated_ex="2026-08-03"),
        ]
        assert plan(transactions, [dividend()]) == [("2026-08-03", "5")]


def made(ex: str, day: str, amount: str, note: str = "n") -> GeneratedDividend:
    return GeneratedDividend(
        symbol="DIV",
        ex_date=date.fromisoformat(ex),
        date=date.fromisoformat(day),
        amount=D(amount),
        currency="USD",
        note=note,
    )


def existing(tx_id: int, ex: str, day: str, amount: str, note: str = "n") -> Transaction:
    return tx(
        "DIVIDEND",
        day,
        amount=amount,
        tx_id=tx_id,
        generated_ex=ex,
        note=note,
        currency="USD",
    )


class TestDiff:
    @pytest.mark.parametrize(
        ("current", "planned", "expected"),
        [
            pytest.param([], [], DividendChanges(), id="nothing"),
            pytest.param(
                [],
                [made("2026-08-03", "2026-08-03", "5")],
                DividendChanges(
                    insert=(made("2026-08-03", "2026-08-03", "5"),), since=date(2026, 8, 3)
                ),
                id="new",
            ),
            pytest.param(
                [existing(7, "2026-08-03", "2026-08-03", "5")],
                [made("2026-08-03", "2026-08-03", "5")],
                DividendChanges(),
                id="unchanged-is-idempotent",
            ),
            pytest.param(
                [existing(7, "2026-08-03", "2026-08-03", "5")],
                [made("2026-08-03", "2026-08-03", "6")],
                DividendChanges(
                    update=((7, made("2026-08-03", "2026-08-03", "6")),), since=date(2026, 8, 3)
                ),
                id="corrected-amount",
            ),
            pytest.param(
                [existing(7, "2026-08-03", "2026-08-20", "5")],
                [made("2026-08-03", "2026-08-03", "5")],
                DividendChanges(
                    update=((7, made("2026-08-03", "2026-08-03", "5")),), since=date(2026, 8, 3)
                ),
                id="moved-earlier-counts-from-new-date",
            ),
            pytest.param(
                [
                    existing(7, "2026-05-01", "2026-05-01", "5"),
                    existing(8, "2026-08-03", "2026-08-03", "5"),
                ],
                [made("2026-08-03", "2026-08-03", "5")],
                DividendChanges(delete=(7,), since=date(2026, 5, 1)),
                id="removed",
            ),
            pytest.param(
                [existing(8, "2026-08-03", "2026-08-03", "5")],
                [made("2026-02-02", "2026-02-02", "4"), made("2026-08-03", "2026-08-03", "5")],
                DividendChanges(
                    insert=(made("2026-02-02", "2026-02-02", "4"),), since=date(2026, 2, 2)
                ),
                id="earliest-change-is-since",
            ),
        ],
    )
    def test_diff(
        self,
        current: list[Transaction],
        planned: list[GeneratedDividend],
        expected: DividendChanges,
    ) -> None:
        """The diff inserts what is missing, updates what differs, deletes what is no
        longer planned, and dates the change from the earliest date it touches."""
        assert diff_dividends(current, planned) == expected

    def test_user_transactions_are_never_touched(self) -> None:
        """Transactions without a generated ex-date are outside the diff."""
        assert not diff_dividends([tx("DIVIDEND", "2026-08-03", amount="5", tx_id=3)], [])

    def test_plan_then_diff_twice_changes_nothing(self) -> None:
        """Applying a plan and planning again gives an empty diff (at-least-once safe)."""
        history = [tx("BUY", "2026-07-01", "10", tx_id=1)]
        planned = plan_dividends(
            history, [dividend()], splits={}, currencies={"DIV": "USD"}, today=TODAY
        )
        written = [
            existing(9, p.ex_date.isoformat(), p.date.isoformat(), str(p.amount), p.note)
            for p in planned
        ]
        again = plan_dividends(
            [*history, *written], [dividend()], splits={}, currencies={"DIV": "USD"}, today=TODAY
        )
        assert not diff_dividends(written, again)
