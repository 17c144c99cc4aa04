"""Positions, cash and snapshot valuation derived from transactions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D  # noqa: N817 - short for dense tables

import pytest

from service.core.trading_calendar import EXCHANGE_TZ, TradingCalendar
from service.portfolio.holdings import PriceInputs, current_holdings
from service.portfolio.positions import (
    LedgerError,
    Split,
    Transaction,
    TxType,
    flow_between,
    replay,
    state_on,
)
from service.portfolio.valuation import MissingPrice, PriceHistory, valuations

_IDS = iter(range(1, 1_000_000))


def tx(
    kind: TxType,
    day: str,
    symbol: str | None = None,
    quantity: str | None = None,
    price: str | None = None,
    amount: str | None = None,
    fee: str = "0",
    *,
    tx_id: int | None = None,
) -> Transaction:
    return Transaction(
        id=tx_id if tx_id is not None else next(_IDS),
        type=kind,
        date=date.fromisoformat(day),
        symbol=symbol,
        quantity=D(quantity) if quantity else None,
        price=D(price) if price else None,
        amount=D(amount) if amount else None,
        fee=D(fee),
    )


def history(*pairs: tuple[str, str]) -> PriceHistory:
    return PriceHistory(
        tuple(date.fromisoformat(d) for d, _ in pairs), tuple(D(c) for _, c in pairs)
    )


class TestReplay:
    @pytest.mark.parametrize(
        ("transactions", "cash", "holdings", "realized", "net_invested"),
        [
            pytest.param(
                [
                    tx("DEPOSIT", "2024-01-02", amount="1000"),
                    tx("BUY", "2024-01-03", "AAA", "10", "50", fee="1"),
                ],
                "499",
                {"AAA": ("10", "501")},
                "0",
                "1000",
                id="buy-fee-joins-cost",
            ),
            pytest.param(
                [
                    tx("DEPOSIT", "2024-01-02", amount="1000"),
                    tx("BUY", "2024-01-03", "AAA", "10", "50"),
                    tx("BUY", "2024-01-04", "AAA", "10", "70"),
                    tx("SELL", "2024-01-05", "AAA", "5", "80", fee="2"),
                ],
                "398",
                {"AAA": ("15", "900")},
                "98",
                "1200",
                id="partial-sell-average-cost",
            ),
            pytest.param(
                [tx("BUY", "2024-01-03", "AAA", "10", "50")],
                "0",
                {"AAA": ("10", "500")},
                "0",
                "500",
                id="implicit-deposit-from-nothing",
            ),
            pytest.param(
                [
                    tx("DEPOSIT", "2024-01-02", amount="100"),
                    tx("BUY", "2024-01-03", "AAA", "10", "50"),
                ],
                "0",
                {"AAA": ("10", "500")},
                "0",
                "500",
                id="implicit-deposit-of-shortfall",
            ),
            pytest.param(
                [
                    tx("BUY", "2024-01-03", "AAA", "10", "50"),
                    tx("SELL", "2024-01-04", "AAA", "10", "60"),
                    tx("DIVIDEND", "2024-01-05", "AAA", amount="7", fee="1"),
                    tx("FEE", "2024-01-06", amount="5"),
                ],
                "601",
                {},
                "100",
                "500",
                id="full-sell-dividend-fee",
            ),
            pytest.param(
                [
                    tx("DEPOSIT", "2024-01-02", amount="1000"),
                    tx("WITHDRAWAL", "2024-01-03", amount="400"),
                ],
                "600",
                {},
                "0",
                "600",
                id="withdrawal",
            ),
        ],
    )
    def test_positions_and_cash(
        self,
        transactions: list[Transaction],
        cash: str,
        holdings: dict[str, tuple[str, str]],
        realized: str,
        net_invested: str,
    ) -> None:
        """Replaying the transactions gives the expected cash, positions, realised P&L and
        invested capital."""
        final = replay(transactions)[-1]
        assert final.cash == D(cash)
        assert {h.symbol: (h.quantity, h.cost_basis) for h in final.holdings} == {
            s: (D(q), D(c)) for s, (q, c) in holdings.items()
        }
        assert final.realized_pnl == D(realized)
        assert final.net_invested == D(net_invested)

    def test_cash_never_negative_and_implicit_deposit_is_a_flow(self) -> None:
        """A buy beyond the cash balance records the shortfall as that day's external flow."""
        states = replay(
            [tx("DEPOSIT", "2024-01-02", amount="100"), tx("BUY", "2024-01-03", "A", "3", "50")]
        )
        assert [s.cash for s in states] == [D(100), D(0)]
        assert [(s.external_flow, s.implicit_deposits) for s in states] == [
            (D(100), D(0)),
            (D(50), D(50)),
        ]

    @pytest.mark.parametrize(
        "charge",
        [
            pytest.param(tx("DIVIDEND", "2024-01-03", "A", amount="2", fee="5"), id="dividend"),
            pytest.param(tx("SELL", "2024-01-03", "A", "1", "2", fee="5"), id="sell"),
            pytest.param(tx("FEE", "2024-01-03", amount="5"), id="fee"),
        ],
    )
    def test_fee_above_the_cash_implies_a_deposit(self, charge: Transaction) -> None:
        """A fee larger than the cash it comes out of leaves cash at zero, the shortfall
        being an implicit deposit, whichever transaction carries it."""
        states = replay([tx("BUY", "2024-01-02", "A", "2", "10"), charge])
        assert states[-1].cash == D(0)
        assert states[-1].external_flow == states[-1].implicit_deposits > 0

    def test_same_date_applies_in_recorded_order(self) -> None:
        """Same-date transactions apply by recorded id, not by the order given."""
        sell = tx("SELL", "2024-01-03", "A", "5", "10", tx_id=2)
        buy = tx("BUY", "2024-01-03", "A", "5", "10", tx_id=1)
        assert replay([sell, buy])[-1].holdings == ()
        with pytest.raises(LedgerError, match="only 0 held"):
            replay(
                [
                    tx("SELL", "2024-01-03", "A", "5", "10", tx_id=1),
                    tx("BUY", "2024-01-03", "A", "5", "10", tx_id=2),
                ]
            )

    def test_split_applies_from_its_date(self) -> None:
        """A 2:1 split doubles the shares from the split date and halves the cost per share."""
        split = Split(symbol="A", date=date(2024, 6, 3), numerator=2, denominator=1)
        states = replay(
            [tx("BUY", "2024-01-03", "A", "10", "100"), tx("SELL", "2024-06-03", "A", "4", "60")],
            [split],
        )
        assert states[0].holdings[0].quantity == D(10)
        after = states[-1].holdings[0]
        assert (after.quantity, after.average_cost) == (D(16), D(50))
        assert states[-1].realized_pnl == D(40)

    @pytest.mark.parametrize(
        ("transactions", "message"),
        [
            ([tx("SELL", "2024-01-03", "A", "1", "10")], "only 0 held"),
            (
                [
                    tx("DEPOSIT", "2024-01-02", amount="10"),
                    tx("WITHDRAWAL", "2024-01-03", amount="11"),
                ],
                "exceeds the cash balance",
            ),
        ],
    )
    def test_refuses_impossible_transactions(
        self, transactions: list[Transaction], message: str
    ) -> None:
        """Overselling and overdrawing are refused, not turned into negative holdings."""
        with pytest.raises(LedgerError, match=message):
            replay(transactions)

    def test_state_on_and_flows_between(self) -> None:
        """The state for a date is the latest on or before it; flows sum over (after, through]."""
        states = replay(
            [tx("DEPOSIT", "2024-01-02", amount="100"), tx("DEPOSIT", "2024-01-05", amount="50")]
        )
        assert state_on(states, date(2024, 1, 1)) is None
        found = state_on(states, date(2024, 1, 4))
        assert found is not None
        assert found.cash == D(100)
        assert flow_between(states, date(2024, 1, 2), date(2024, 1, 8)) == D(50)
        assert flow_between(states, None, date(2024, 1, 8)) == D(150)


class TestValuations:
    def test_weekend_and_holiday_carry_last_close(self) -> None:
        """A weekend or holiday date is valued at the last close on or before it."""
        states = replay([tx("BUY", "2024-07-01", "A", "10", "10")])
        prices = {"A": history(("2024-07-01", "10"), ("2024-07-03", "12"))}
        rows = valuations(
            states,
            dates=[date(2024, 7, 4), date(2024, 7, 6)],
            previous=date(2024, 7, 3),
            prices=prices,
            splits={},
        )
        assert [(r.date, r.market_value, r.holdings[0].price_date) for r in rows] == [
            (date(2024, 7, 4), D(120), date(2024, 7, 3)),
            (date(2024, 7, 6), D(120), date(2024, 7, 3)),
        ]
        assert [r.day_change for r in rows] == [D(0), D(0)]

    def test_day_change_excludes_flows_and_starts_at_inception(self) -> None:
        """Day change is the value change minus external flows; dates before inception are
        skipped."""
        states = replay(
            [tx("BUY", "2024-01-03", "A", "10", "10"), tx("DEPOSIT", "2024-01-04", amount="500")]
        )
        prices = {"A": history(("2024-01-03", "10"), ("2024-01-04", "11"))}
        rows = valuations(
            states,
            dates=[date(2024, 1, 2), date(2024, 1, 3), date(2024, 1, 4)],
            previous=date(2023, 12, 29),
            prices=prices,
            splits={},
        )
        assert [(r.date, r.total_value, r.net_flow, r.day_change) for r in rows] == [
            (date(2024, 1, 3), D(100), D(100), D(0)),
            (date(2024, 1, 4), D(610), D(500), D(10)),
        ]
        assert rows[-1].unrealized_pnl == D(10)

    def test_split_adjusted_closes_value_pre_split_shares(self) -> None:
        """Before a 2:1 split, today's split-adjusted close is scaled back to the price then."""
        split = Split(symbol="A", date=date(2024, 1, 5), numerator=2, denominator=1)
        states = replay([tx("BUY", "2024-01-03", "A", "10", "100")], [split])
        prices = {"A": history(("2024-01-04", "51"), ("2024-01-05", "52"))}
        rows = valuations(
            states,
            dates=[date(2024, 1, 4), date(2024, 1, 5)],
            previous=None,
            prices=prices,
            splits={"A": [split]},
        )
        assert [(r.holdings[0].quantity, r.market_value) for r in rows] == [
            (D(10), D(1020)),
            (D(20), D(1040)),
        ]

    def test_close_older_than_a_split_values_post_split_shares(self) -> None:
        """On a split date with no close yet, the last (already adjusted) close prices the
        post-split shares: the value does not jump by the split ratio."""
        split = Split(symbol="A", date=date(2024, 1, 5), numerator=2, denominator=1)
        states = replay([tx("BUY", "2024-01-03", "A", "10", "100")], [split])
        prices = {"A": history(("2024-01-04", "51"))}
        rows = valuations(
            states,
            dates=[date(2024, 1, 4), date(2024, 1, 5)],
            previous=None,
            prices=prices,
            splits={"A": [split]},
        )
        assert [(r.holdings[0].quantity, r.holdings[0].close, r.market_value) for r in rows] == [
            (D(10), D(102), D(1020)),
            (D(20), D(51), D(1020)),
        ]
        assert rows[-1].day_change == D(0)

    def test_holdings_value_post_split_shares_at_a_stale_close(self) -> None:
        """`GET …/holdings` prices post-split shares at an adjusted close from before the split."""
        split = Split(symbol="A", date=date(2024, 1, 5), numerator=2, denominator=1)
        states = replay([tx("BUY", "2024-01-03", "A", "10", "100")], [split])
        shown = current_holdings(
            1,
            state_on(states, date(2024, 1, 5)),
            as_of=date(2024, 1, 5),
            today=date(2024, 1, 5),
            inputs=PriceInputs(
                now=datetime(2024, 1, 5, 15, tzinfo=EXCHANGE_TZ),
                calendar=TradingCalendar(),
                closes={"A": (date(2024, 1, 4), D(51))},
                quotes={},
                splits={"A": [split]},
            ),
        )
        assert (shown.holdings[0].quantity, shown.holdings[0].close, shown.total_value) == (
            20.0,
            51.0,
            1020.0,
        )

    def test_missing_price_is_an_error_not_zero(self) -> None:
        """A held symbol without any close on or before the date raises MissingPrice."""
        states = replay([tx("BUY", "2024-01-03", "A", "10", "10")])
        with pytest.raises(MissingPrice, match="no close for A"):
            valuations(
                states,
                dates=[date(2024, 1, 3)],
                previous=None,
                prices={"A": history(("2024-01-04", "10"))},
                splits={},
            )
