"""Currency conversion in the pure core: stored rates, booked rates, P&L split, minor units."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D  # noqa: N817 - short for dense tables

import pytest

from service.portfolio.fx import FxRates, MissingFx, major, needed_pairs
from service.portfolio.positions import LedgerError, Transaction, TxType, replay, state_on
from service.portfolio.valuation import Currencies, PriceHistory, valuations

DAY = date.fromisoformat
RATES = FxRates.from_closes(
    {
        "EURUSD=X": [(DAY("2025-03-03"), D("1.10")), (DAY("2025-03-05"), D("1.20"))],
        "GBPUSD=X": [(DAY("2025-03-03"), D("1.25")), (DAY("2025-03-05"), D("1.30"))],
        "USDJPY=X": [(DAY("2025-03-03"), D("150"))],
        "USDCHF=X": [(DAY("2025-03-04"), D("0.9"))],
    }
)


def tx(
    tx_id: int,
    kind: TxType,
    day: str,
    *,
    symbol: str | None = None,
    quantity: str | None = None,
    price: str | None = None,
    amount: str | None = None,
    fee: str = "0",
    currency: str | None = None,
    fx_rate: str | None = None,
) -> Transaction:
    return Transaction(
        id=tx_id,
        type=kind,
        date=DAY(day),
        symbol=symbol,
        quantity=None if quantity is None else D(quantity),
        price=None if price is None else D(price),
        amount=None if amount is None else D(amount),
        fee=D(fee),
        currency=currency,
        fx_rate=None if fx_rate is None else D(fx_rate),
    )


class TestRates:
    @pytest.mark.parametrize(
        ("source", "target", "day", "expected"),
        [
            ("EUR", "USD", "2025-03-03", D("1.10")),
            ("EUR", "USD", "2025-03-04", D("1.10")),  # the day before carries
            ("EUR", "USD", "2025-03-05", D("1.20")),
            ("EUR", "USD", "2025-03-09", D("1.20")),  # four days old: still used
            ("EUR", "USD", "2025-03-10", None),  # five days old: missing
            ("EUR", "USD", "2025-03-02", None),  # before the first close
            ("USD", "EUR", "2025-03-05", D(1) / D("1.20")),  # inverse of a stored pair
            ("GBp", "USD", "2025-03-03", D("0.0125")),  # pence: a hundredth of GBP
            ("GBP", "GBp", "2025-03-03", D(100)),
            ("GBp", "GBP", "2025-03-03", D("0.01")),
            ("EUR", "JPY", "2025-03-03", D("1.10") * D(150)),  # cross, both legs same date
            ("EUR", "CHF", "2025-03-04", None),  # cross legs from different dates
            ("SEK", "USD", "2025-03-03", None),  # never stored
            ("USD", "USD", "2025-03-03", D(1)),
        ],
    )
    def test_rate(self, source: str, target: str, day: str, expected: D | None) -> None:
        """A rate is a stored close (or its inverse, or a same-date cross via USD), never
        guessed."""
        assert RATES.rate(source, target, DAY(day)) == expected

    def test_minor_units_keep_their_case(self) -> None:
        """GBp is pence (a hundredth of GBP); GBP is pounds."""
        assert major("GBp") == ("GBP", D(100))
        assert major("GBP") == ("GBP", D(1))

    def test_needed_pairs(self) -> None:
        """Each foreign major currency needs its pair into the base; minor units need their
        major's pair; the base needs none."""
        assert needed_pairs(["EUR", "GBp", None, "USD", "GBP"], base="USD") == [
            "EURUSD=X",
            "GBPUSD=X",
        ]


EUR_CLOSES = PriceHistory((DAY("2025-03-03"), DAY("2025-03-05")), (D("100"), D("110")))
GBP_CLOSES = PriceHistory((DAY("2025-03-03"), DAY("2025-03-05")), (D("150"), D("160")))
USD = Currencies(base="USD", of_symbol={"SAP.DE": "EUR", "VOD.L": "GBp"}, rates=RATES)
BUY_EUR = tx(
    2, "BUY", "2025-03-03", symbol="SAP.DE", quantity="10", price="100", currency="EUR",
    fx_rate="1.10",
)  # fmt: skip
DEPOSIT = tx(1, "DEPOSIT", "2025-03-03", amount="2000")


class TestConversion:
    @pytest.mark.parametrize(
        ("transactions", "day", "cash", "market_value", "cost", "fx_pnl"),
        [
            # bought at 1.10, valued at 1.20: 10 x 110 EUR x 1.20; the FX part is
            # 1000 EUR x 1.20 - 1100 USD booked.
            ([DEPOSIT, BUY_EUR], "2025-03-05", "900", "1320", "1100", "100"),
            ([DEPOSIT, BUY_EUR], "2025-03-03", "900", "1100", "1100", "0"),
            # 100 shares at 150 GBp and 1.25 USD per GBP: 187.50 USD; valued at 160 GBp, 1.30.
            (
                [
                    DEPOSIT,
                    tx(3, "BUY", "2025-03-03", symbol="VOD.L", quantity="100", price="150",
                       currency="GBp", fx_rate="1.25"),
                ],
                "2025-03-05",
                "1812.5",
                "208",
                "187.5",
                "7.5",
            ),
        ],
    )  # fmt: skip
    def test_position_valued_in_base(
        self,
        transactions: list[Transaction],
        day: str,
        cash: str,
        market_value: str,
        cost: str,
        fx_pnl: str,
    ) -> None:
        """Cost converts at the booked rate, the value at the valuation date's stored rate."""
        states = replay(transactions, base="USD")
        rows = valuations(
            states,
            dates=[DAY(day)],
            previous=None,
            prices={"SAP.DE": EUR_CLOSES, "VOD.L": GBP_CLOSES},
            splits={},
            currencies=USD,
        )
        (row,) = rows
        assert row.cash == D(cash)
        assert row.market_value == D(market_value)
        assert row.cost_basis == D(cost)
        (holding,) = row.holdings
        assert holding.unrealized_fx_pnl == D(fx_pnl)
        assert holding.unrealized_pnl == D(market_value) - D(cost)

    @pytest.mark.parametrize(
        ("sell_price", "sell_rate", "realized", "fx_part"),
        [
            ("120", "1.20", "340", "100"),  # price +240 (200 EUR x 1.20), FX +100
            ("100", "1.00", "-100", "-100"),  # price flat, the euro fell
            ("90", "1.10", "-110", "0"),  # rate flat, the price fell
        ],
    )
    def test_sale_splits_realised_pnl(
        self, sell_price: str, sell_rate: str, realized: str, fx_part: str
    ) -> None:
        """A sale books realised P&L in base and its FX part: the cost sold in EUR at the
        sale's rate less the cost in USD as booked."""
        sell = tx(
            3, "SELL", "2025-03-05", symbol="SAP.DE", quantity="10", price=sell_price,
            currency="EUR", fx_rate=sell_rate,
        )  # fmt: skip
        state = state_on(replay([DEPOSIT, BUY_EUR, sell], base="USD"), DAY("2025-03-05"))
        assert state is not None
        assert state.realized_pnl == D(realized)
        assert state.realized_fx_pnl == D(fx_part)
        assert state.cash == D(900) + D(10) * D(sell_price) * D(sell_rate)

    def test_missing_rate_lists_pair_and_date(self) -> None:
        """A date without a stored rate fails the valuation naming every pair and date."""
        with pytest.raises(MissingFx) as caught:
            valuations(
                replay([DEPOSIT, BUY_EUR], base="USD"),
                dates=[DAY("2025-03-05"), DAY("2025-03-11"), DAY("2025-03-12")],
                previous=None,
                prices={"SAP.DE": EUR_CLOSES},
                splits={},
                currencies=USD,
            )
        assert caught.value.missing == ["EURUSD 2025-03-11", "EURUSD 2025-03-12"]
        assert str(caught.value) == "missing_fx: ['EURUSD 2025-03-11', 'EURUSD 2025-03-12']"

    def test_foreign_transaction_needs_its_rate(self) -> None:
        """A transaction in another currency without a booked rate is refused, never taken
        at 1.0."""
        no_rate = tx(2, "BUY", "2025-03-03", symbol="SAP.DE", quantity="1", price="1",
                     currency="EUR")  # fmt: skip
        with pytest.raises(LedgerError, match="fx_rate"):
            replay([DEPOSIT, no_rate], base="USD")

    def test_base_currency_and_null_currency_agree(self) -> None:
        """A transaction in the base currency, or with none, converts at exactly 1."""
        stated = tx(2, "BUY", "2025-03-03", symbol="AAPL", quantity="2", price="10",
                    currency="USD")  # fmt: skip
        unstated = tx(2, "BUY", "2025-03-03", symbol="AAPL", quantity="2", price="10")
        one = replay([DEPOSIT, stated], base="USD")[-1]
        other = replay([DEPOSIT, unstated], base="USD")[-1]
        assert one.cash == other.cash == D(1980)
        assert one.holdings == other.holdings
