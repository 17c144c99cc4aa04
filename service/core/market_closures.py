"""Load the trading calendar with the sudden closures and early closes recorded in Postgres
(`market_closures`)."""

from __future__ import annotations

from datetime import date, time

import asyncpg

from service.core.trading_calendar import TradingCalendar


async def load_trading_calendar(connection: asyncpg.Connection) -> TradingCalendar:
    """The NYSE calendar plus every closure and early close in `market_closures`."""
    rows = await connection.fetch("SELECT day, closes_at FROM market_closures")
    closures: list[date] = [row["day"] for row in rows if row["closes_at"] is None]
    early: dict[date, time] = {
        row["day"]: row["closes_at"] for row in rows if row["closes_at"] is not None
    }
    return TradingCalendar(closures=closures, early_closes=early)
