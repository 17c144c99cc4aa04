"""Which price values a holding, and when it is stale, on awkward dates (pure)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D  # noqa: N817 - short for dense tables

import pytest

from service.core.trading_calendar import EXCHANGE_TZ, TradingCalendar
from service.portfolio.holdings import PriceInputs, current_holdings
from service.portfolio.positions import Transaction, replay, state_on
from service.portfolio.pricing import StoredQuote

CALENDAR = TradingCalendar()


def et(text: str) -> datetime:
    """A New York wall-clock instant from 'YYYY-MM-DD HH:MM'."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=EXCHANGE_TZ)


def one_holding(
    *, now: str, close: tuple[str, str] | None, quote: tuple[str, str | None] | None
) -> tuple[str | None, float | None, bool, datetime | None]:
    """(source, price, stale, price_time) of 10 shares of A bought 2026-01-05."""
    states = replay(
        [
            Transaction(
                id=1,
                type="BUY",
                date=date(2026, 1, 5),
                symbol="A",
                quantity=D(10),
                price=D(1),
                amount=None,
                fee=D(0),
            )
        ]
    )
    instant = et(now)
    inputs = PriceInputs(
        now=instant,
        calendar=CALENDAR,
        closes={} if close is None else {"A": (date.fromisoformat(close[0]), D(close[1]))},
        quotes={}
        if quote is None
        else {
            "A": StoredQuote(
                price=D(quote[0]), market_time=None if quote[1] is None else et(quote[1])
            )
        },
        splits={},
    )
    today = instant.date()
    shown = current_holdings(1, state_on(states, today), as_of=today, today=today, inputs=inputs)
    row = shown.holdings[0]
    assert shown.price_time == row.price_time
    assert shown.stale_prices == (["A"] if row.stale else [])
    return row.price_source, row.price, row.stale, row.price_time


@pytest.mark.parametrize(
    ("now", "close", "quote", "expected"),
    [
        # Tuesday in session: a quote from this morning beats Monday's close; fresh.
        (
            "2026-11-17 11:05",
            ("2026-11-16", "100"),
            ("101", "2026-11-17 11:00"),
            ("quote", 101.0, False, et("2026-11-17 11:00")),
        ),
        # The stored close of the quote's own session wins over a quote stamped at the close.
        (
            "2026-11-16 18:00",
            ("2026-11-16", "100"),
            ("100.5", "2026-11-16 16:00"),
            ("close", 100.0, False, et("2026-11-16 16:00")),
        ),
        # A quote older than the close loses to it.
        (
            "2026-11-17 10:00",
            ("2026-11-16", "100"),
            ("99", "2026-11-13 15:00"),
            ("close", 100.0, False, et("2026-11-16 16:00")),
        ),
        # Tuesday with only Friday's close: Monday's session completed without us: stale.
        (
            "2026-11-17 11:00",
            ("2026-11-13", "100"),
            None,
            ("close", 100.0, True, et("2026-11-13 16:00")),
        ),
        # Early close (2026-11-27, 13:00): at 14:00 a 12:59 quote is older than the close.
        (
            "2026-11-27 14:00",
            ("2026-11-25", "100"),
            ("102", "2026-11-27 12:59"),
            ("quote", 102.0, True, et("2026-11-27 12:59")),
        ),
        # …and a quote stamped at the 13:00 close is fresh.
        (
            "2026-11-27 14:00",
            ("2026-11-25", "100"),
            ("102", "2026-11-27 13:00"),
            ("quote", 102.0, False, et("2026-11-27 13:00")),
        ),
        # Saturday after the early close: Friday's stored close, timed 13:00, is fresh.
        (
            "2026-11-28 10:00",
            ("2026-11-27", "103"),
            ("102", "2026-11-27 13:00"),
            ("close", 103.0, False, et("2026-11-27 13:00")),
        ),
        # Good Friday (2026-04-03) is no session: Thursday's close is still fresh on Friday.
        (
            "2026-04-03 12:00",
            ("2026-04-02", "100"),
            None,
            ("close", 100.0, False, et("2026-04-02 16:00")),
        ),
        # The day after the MLK holiday (Tuesday 2026-01-20), before the open: at 09:00 the
        # last completed session is Friday 2026-01-16, whose close is fresh.
        (
            "2026-01-20 09:00",
            ("2026-01-16", "100"),
            None,
            ("close", 100.0, False, et("2026-01-16 16:00")),
        ),
        # A quote without a market time cannot be placed against the close: not used.
        (
            "2026-11-17 11:00",
            ("2026-11-16", "100"),
            ("150", None),
            ("close", 100.0, False, et("2026-11-16 16:00")),
        ),
        # Only a quote (no stored history yet): it is used.
        (
            "2026-11-17 11:00",
            None,
            ("42", "2026-11-17 10:30"),
            ("quote", 42.0, False, et("2026-11-17 10:30")),
        ),
        # The day after the DST switch (2026-11-02): times compare as instants, not clocks.
        (
            "2026-11-02 09:00",
            ("2026-10-30", "100"),
            ("101", "2026-10-30 16:00"),
            ("close", 100.0, False, et("2026-10-30 16:00")),
        ),
    ],
)
def test_price_choice_and_staleness(
    now: str,
    close: tuple[str, str] | None,
    quote: tuple[str, str | None] | None,
    expected: tuple[str | None, float | None, bool, datetime | None],
) -> None:
    """A holding uses the quote only when it traded after the last close, and is stale only
    when its price is older than the last completed session's close."""
    assert one_holding(now=now, close=close, quote=quote) == expected


def test_totals_carry_oldest_price_time_and_stale_symbols() -> None:
    """The totals name the oldest price used and every stale symbol, and value each position
    at its chosen price."""
    buys = [
        Transaction(
            id=i,
            type="BUY",
            date=date(2026, 1, 5),
            symbol=symbol,
            quantity=D(2),
            price=D(1),
            amount=None,
            fee=D(0),
        )
        for i, symbol in enumerate(["A", "B", "C"], start=1)
    ]
    state = state_on(replay(buys), date(2026, 11, 18))
    inputs = PriceInputs(
        now=et("2026-11-18 14:05"),
        calendar=CALENDAR,
        closes={
            "A": (date(2026, 11, 17), D(10)),
            "B": (date(2026, 11, 12), D(20)),
            "C": (date(2026, 11, 17), D(30)),
        },
        quotes={
            "A": StoredQuote(price=D(11), market_time=et("2026-11-18 14:00")),
            "C": StoredQuote(price=D(31), market_time=et("2026-11-17 13:00")),
        },
        splits={},
    )
    shown = current_holdings(
        1, state, as_of=date(2026, 11, 18), today=date(2026, 11, 18), inputs=inputs
    )
    assert [(h.symbol, h.price, h.price_source, h.stale) for h in shown.holdings] == [
        ("A", 11.0, "quote", False),
        ("B", 20.0, "close", True),
        ("C", 30.0, "close", False),
    ]
    assert shown.stale_prices == ["B"]
    assert shown.price_time == et("2026-11-12 16:00")
    assert shown.market_value == 2 * 11 + 2 * 20 + 2 * 30


def test_a_past_date_ignores_quotes() -> None:
    """Holdings as of an earlier date are valued at that date's closes, never today's quote."""
    state = state_on(
        replay(
            [
                Transaction(
                    id=1,
                    type="BUY",
                    date=date(2026, 1, 5),
                    symbol="A",
                    quantity=D(1),
                    price=D(1),
                    amount=None,
                    fee=D(0),
                )
            ]
        ),
        date(2026, 11, 13),
    )
    inputs = PriceInputs(
        now=et("2026-11-18 14:05"),
        calendar=CALENDAR,
        closes={"A": (date(2026, 11, 13), D(10))},
        quotes={"A": StoredQuote(price=D(11), market_time=et("2026-11-18 14:00"))},
        splits={},
    )
    shown = current_holdings(
        1, state, as_of=date(2026, 11, 13), today=date(2026, 11, 18), inputs=inputs
    )
    assert (shown.holdings[0].price, shown.holdings[0].stale) == (10.0, False)
