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


def bar_rows(symbol: str, bars: Iterable[Bar], *, source: str) -> list[BarRow]:
    """Database rows for `bars`, prices as Decimals rounded as the column stores them."""
    # Hot path (hundreds of thousands of values per fetch): local names, no helper calls.
    dec, six, none = Decimal, _SIX_PLACES, None
    return [
        (
            symbol,
            bar.date,
            none if bar.open is None else dec(repr(bar.open)).quantize(six),
            none if bar.high is None else dec(repr(bar.high)).quantize(six),
            none if bar.low is None else dec(repr(bar.low)).quantize(six),
            dec(repr(bar.close)).quantize(six),
            none if bar.adj_close is None else dec(repr(bar.adj_close)).quantize(six),
            bar.volume,
            source,
        )
        for bar in bars
    ]


async def ensure_assets(connection: asyncpg.Connection, symbols: Sequence[str]) -> None:
    """Create a bare asset row for each symbol not yet known."""
    await connection.execute(
        "INSERT INTO assets (symbol) SELECT unnest($1::text[]) ON CONFLICT (symbol) DO NOTHING",
        list(symbols),
    )


async def copy_upsert(
    connection: asyncpg.Connection,
    *,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    records: Sequence[tuple[object, ...]],
) -> int:
    """COPY `records` into a temp table and merge them into `table`, changing only rows
    whose values differ; return how many rows were inserted or changed.

    `table`, `columns` and `key` are trusted identifiers from this module, never input.
    """
    if not records:
        return 0
    incoming = f"incoming_{table}"
    cols = ", ".join(columns)
    keys = ", ".join(key)
    values = [c for c in columns if c not in key]
    assignments = ", ".join(f"{c} = excluded.{c}" for c in values)
    current = ", ".join(f"t.{c}" for c in values)
    proposed = ", ".join(f"excluded.{c}" for c in values)
    async with connection.transaction():
        await connection.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {incoming} "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        await connection.copy_records_to_table(incoming, records=records, columns=columns)
        status: str = await connection.execute(
            f"INSERT INTO {table} AS t ({cols}) "  # noqa: S608 - trusted identifiers only
            f"SELECT DISTINCT ON ({keys}) {cols} FROM {incoming} ORDER BY {keys} "
            f"ON CONFLICT ({keys}) DO UPDATE SET {assignments}, updated_at = now() "
            f"WHERE ({current}) IS DISTINCT FROM ({proposed})"
        )
    return int(status.rsplit(" ", 1)[-1])


async def upsert_bars(connection: asyncpg.Connection, rows: Sequence[BarRow]) -> int:
    """Merge `rows` into daily_prices in one transaction; return how many rows changed."""
    if not rows:
        return 0
    async with connection.transaction():
        await ensure_assets(connection, sorted({row[0] for row in rows}))
        return await copy_upsert(
            connection,
            table="daily_prices",
            columns=BAR_COLUMNS,
            key=("symbol", "date"),
            records=rows,
        )
