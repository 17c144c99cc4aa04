"""Current holdings valued at the newest price (pure): what `GET …/holdings` shows.

Each position is valued at its latest quote when that quote is newer than the
last close, else at the last close (`pricing.best_price`), and says which price
it used, when it traded and whether it is stale. The totals carry the oldest
price time they used and the stale symbols, so a dashboard can show "as of
14:05 ET, 2 prices stale" from one response.

Prices (`close`, `price`) are in the asset's own `currency`; every money figure
is in the portfolio's base `currency`, converted at the stored rate of `as_of`
(`service.portfolio.fx`). A missing rate leaves that position's money fields
and the totals null and is listed in `missing_fx`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from service.core.trading_calendar import TradingCalendar
from service.portfolio.positions import ZERO, DayState, Holding, Split
from service.portfolio.pricing import (
    Price,
    StoredQuote,
    best_price,
    freshness_reference,
    stale_before,
)
from service.portfolio.schemas import HoldingOut, HoldingsOut, number
from service.portfolio.valuation import BASE_ONLY, Currencies, close_for_shares_on


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceInputs:
    """What a holdings valuation reads: the instant, the calendar, closes, quotes, splits."""

    now: datetime
    calendar: TradingCalendar
    closes: Mapping[str, tuple[date, Decimal]]
    quotes: Mapping[str, StoredQuote]
    splits: Mapping[str, Sequence[Split]]
    currencies: Currencies = BASE_ONLY


def _empty(portfolio_id: int, as_of: date, currency: str | None) -> HoldingsOut:
    return HoldingsOut(
        portfolio_id=portfolio_id,
        as_of=as_of,
        currency=currency,
        cash=0.0,
        market_value=0.0,
        total_value=0.0,
        realized_pnl=0.0,
        income=0.0,
        fees=0.0,
        net_invested=0.0,
        holdings=[],
        missing_prices=[],
        price_time=None,
        stale_prices=[],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Valued:
    symbol: str
    quantity: Decimal
    cost: Decimal
    close: tuple[date, Decimal] | None
    price: Price | None
    market_value: Decimal | None
    stale: bool
    currency: str | None = None
    fx_rate: Decimal | None = None
    fx_pnl: Decimal | None = None
    missing_fx: str | None = None


def current_holdings(
    portfolio_id: int, state: DayState | None, *, as_of: date, today: date, inputs: PriceInputs
) -> HoldingsOut:
    """Positions at `as_of` valued at the newest price (quotes only when `as_of` is today or
    later); an unpriced position gets null price fields and makes the totals null, never
    zero."""
    base = inputs.currencies.base
    if state is None:
        return _empty(portfolio_id, as_of, base)
    stale_from = stale_before(freshness_reference(as_of=as_of, now=inputs.now), inputs.calendar)
    valued = [
        _value(
            holding=h,
            inputs=inputs,
            as_of=as_of,
            use_quote=as_of >= today,
            stale_from=stale_from,
        )
        for h in state.holdings
    ]
    missing = [v.symbol for v in valued if v.price is None]
    missing_fx = sorted({v.missing_fx for v in valued if v.missing_fx})
    market = None if missing or missing_fx else sum((v.market_value or ZERO for v in valued), ZERO)
    total = None if market is None else market + state.cash
    times = [v.price.time for v in valued if v.price is not None]
    return HoldingsOut(
        portfolio_id=portfolio_id,
        as_of=as_of,
        currency=base,
        cash=float(state.cash),
        market_value=number(market),
        total_value=number(total),
        realized_pnl=float(state.realized_pnl),
        income=float(state.income),
        fees=float(state.fees),
        net_invested=float(state.net_invested),
        holdings=[_row(v, total) for v in valued],
        missing_prices=missing,
        price_time=min(times) if times else None,
        stale_prices=[v.symbol for v in valued if v.stale],
        missing_fx=missing_fx,
        realized_fx_pnl=float(state.realized_fx_pnl),
    )


def _value(
    *,
    holding: Holding,
    inputs: PriceInputs,
    as_of: date,
    use_quote: bool,
    stale_from: datetime,
) -> _Valued:
    symbol = holding.symbol
    # Stored closes are split-adjusted as of today and a quote is in today's shares: a split
    # dated after `as_of` scales either to the price of a share held on `as_of`.
    factor = close_for_shares_on(Decimal(1), inputs.splits.get(symbol, ()), as_of)
    found = inputs.closes.get(symbol)
    close = None if found is None else (found[0], found[1] * factor)
    quote = inputs.quotes.get(symbol) if use_quote else None
    price = best_price(close=close, quote=quote, calendar=inputs.calendar)
    if price is not None and price.source == "quote":
        price = Price(value=price.value * factor, time=price.time, source="quote")
    currencies = inputs.currencies
    currency = currencies.price_currency(holding)
    rate = currencies.to_base(currency, as_of)
    own_rate = currencies.to_base(holding.currency, as_of)
    missing_fx = None
    if rate is None:
        missing_fx = currencies.missing(currency or "", as_of)
    elif own_rate is None and holding.currency is not None:
        missing_fx = currencies.missing(holding.currency, as_of)
    return _Valued(
        symbol=symbol,
        quantity=holding.quantity,
        cost=holding.cost_basis,
        close=close,
        price=price,
        market_value=(
            None if price is None or rate is None else holding.quantity * price.value * rate
        ),
        stale=price is not None and price.time < stale_from,
        currency=currency or currencies.base,
        fx_rate=rate,
        fx_pnl=(
            None
            if own_rate is None
            else holding.cost_in_own_currency * own_rate - holding.cost_basis
        ),
        missing_fx=missing_fx,
    )


def _row(valued: _Valued, total: Decimal | None) -> HoldingOut:
    price, value, quantity = valued.price, valued.market_value, valued.quantity
    return HoldingOut(
        symbol=valued.symbol,
        quantity=float(quantity),
        average_cost=float(valued.cost / quantity) if quantity else 0.0,
        cost_basis=float(valued.cost),
        close=None if valued.close is None else float(valued.close[1]),
        price_date=None if valued.close is None else valued.close[0],
        price=None if price is None else float(price.value),
        price_time=None if price is None else price.time,
        price_source=None if price is None else price.source,
        stale=valued.stale,
        market_value=number(value),
        unrealized_pnl=None if value is None else float(value - valued.cost),
        weight=float(value / total) if value is not None and total else None,
        currency=valued.currency,
        fx_rate=number(valued.fx_rate),
        unrealized_fx_pnl=None if value is None else number(valued.fx_pnl),
    )
