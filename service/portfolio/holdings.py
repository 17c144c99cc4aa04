"""Current holdings valued at the latest closes (pure): what `GET …/holdings` shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal

from service.portfolio.positions import ZERO, DayState, Split
from service.portfolio.schemas import HoldingOut, HoldingsOut, number
from service.portfolio.valuation import close_for_shares_on


def current_holdings(
    portfolio_id: int,
    state: DayState | None,
    *,
    as_of: date,
    closes: Mapping[str, tuple[date, Decimal]],
    splits: Mapping[str, Sequence[Split]],
) -> HoldingsOut:
    """Positions at `as_of` valued at each symbol's last close; an unpriced position gets
    null price fields and makes the totals null, never zero."""
    if state is None:
        return HoldingsOut(
            portfolio_id=portfolio_id,
            as_of=as_of,
            cash=0.0,
            market_value=0.0,
            total_value=0.0,
            realized_pnl=0.0,
            income=0.0,
            fees=0.0,
            net_invested=0.0,
            holdings=[],
            missing_prices=[],
        )
    valued: list[tuple[str, Decimal, Decimal, date | None, Decimal | None, Decimal | None]] = []
    missing: list[str] = []
    for holding in state.holdings:
        found = closes.get(holding.symbol)
        if found is None:
            missing.append(holding.symbol)
            valued.append((holding.symbol, holding.quantity, holding.cost_basis, None, None, None))
            continue
        price_date, close = found
        close = close_for_shares_on(close, splits.get(holding.symbol, ()), as_of)
        valued.append(
            (
                holding.symbol,
                holding.quantity,
                holding.cost_basis,
                price_date,
                close,
                holding.quantity * close,
            )
        )
    market = None if missing else sum((v[5] or ZERO for v in valued), ZERO)
    total = None if market is None else market + state.cash
    rows = [
        HoldingOut(
            symbol=symbol,
            quantity=float(quantity),
            average_cost=float(cost / quantity) if quantity else 0.0,
            cost_basis=float(cost),
            close=number(close),
            price_date=price_date,
            market_value=number(value),
            unrealized_pnl=None if value is None else float(value - cost),
            weight=float(value / total) if value is not None and total else None,
        )
        for symbol, quantity, cost, price_date, close, value in valued
    ]
    return HoldingsOut(
        portfolio_id=portfolio_id,
        as_of=as_of,
        cash=float(state.cash),
        market_value=number(market),
        total_value=number(total),
        realized_pnl=float(state.realized_pnl),
        income=float(state.income),
        fees=float(state.fees),
        net_invested=float(state.net_invested),
        holdings=rows,
        missing_prices=missing,
    )
