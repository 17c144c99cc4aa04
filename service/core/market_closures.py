"""Load the trading calendar with the sudden closures recorded in Postgres (`market_closures`)."""

from __future__ import annotations

from datetime import date

import asyncpg

from service.core.trading_calendar import TradingCalendar


async def load_trading_calendar(connection: asyncpg.Connection) -> TradingCalendar:
    """The NYSE calendar plus every closure in `market_closures`."""
    rows = await connection.fetch("SELECT day FROM market_closures")
    closures: list[date] = [row["day"] for row in rows]
    return TradingCalendar(closures=closures)
