"""Idempotent bulk writes of assets and daily bars.

Rows are COPYed into a temporary table and merged with one
`INSERT … ON CONFLICT DO UPDATE … WHERE <something changed>`, so writing the
same bars twice (Celery redelivers) leaves identical rows and touches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import asyncpg

from workers.yahoo_chart import Bar

BarRow = tuple[
    str,
    object,
    Decimal | None,
    Decimal | None,
    Decimal | None,
    Decimal,
    Decimal | None,
    int | None,
    str,
]
BAR_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "adj_close", "volume", "source")
_SIX_PLACES = Decimal("0.000001")


def _money(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(repr(value)).quantize(_SIX_PLACES)


def bar_rows(symbol: str, bars: Iterable[Bar], *, source: str) -> list[BarRow]:
    """Database rows for `bars`, prices as Decimals rounded as the column stores them."""
    rows: list[BarRow] = []
    for bar in bars:
        close = _money(bar.close)
        assert close is not None
        rows.append(
            (
                symbol,
                bar.date,
                _money(bar.open),
                _money(bar.high),
                _money(bar.low),
                close,
                _money(bar.adj_close),
                bar.volume,
                source,
            )
        )
    return rows


async def ensure_assets(connection: asyncpg.Connection, symbols: Sequence[str]) -> None:
    """Create a bare asset row for each symbol not yet known."""
    await connection.execute(
        "INSERT INTO assets (symbol) SELECT unnest($1::text[]) ON CONFLICT (symbol) DO NOTHING",
        list(symbols),
    )


async def upsert_bars(connection: asyncpg.Connection, rows: Sequence[BarRow]) -> int:
    """Merge `rows` into daily_prices in one transaction; return how many rows changed."""
    if not rows:
        return 0
    async with connection.transaction():
        await ensure_assets(connection, sorted({row[0] for row in rows}))
        await connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_bars "
            "(LIKE daily_prices INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await connection.copy_records_to_table("incoming_bars", records=rows, columns=BAR_COLUMNS)
        status: str = await connection.execute(
            """
            INSERT INTO daily_prices AS t (symbol, date, open, high, low, close, adj_close,
                                           volume, source)
            SELECT DISTINCT ON (symbol, date) symbol, date, open, high, low, close, adj_close,
                   volume, source
            FROM incoming_bars ORDER BY symbol, date
            ON CONFLICT (symbol, date) DO UPDATE SET
                open = excluded.open, high = excluded.high, low = excluded.low,
                close = excluded.close, adj_close = excluded.adj_close,
                volume = excluded.volume, source = excluded.source, updated_at = now()
            WHERE (t.open, t.high, t.low, t.close, t.adj_close, t.volume, t.source)
                  IS DISTINCT FROM
                  (excluded.open, excluded.high, excluded.low, excluded.close,
                   excluded.adj_close, excluded.volume, excluded.source)
            """
        )
    return int(status.rsplit(" ", 1)[-1])
