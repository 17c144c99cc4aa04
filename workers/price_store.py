"""Idempotent bulk writes of assets and daily bars.

Rows are COPYed into a temporary table and merged with one
`INSERT … ON CONFLICT DO UPDATE … WHERE <something changed>`, so writing the
same bars twice (Celery redelivers) leaves identical rows and touches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date

import asyncpg

from workers.yahoo_chart import Bar

BarRow = tuple[
    str, date, float | None, float | None, float | None, float, float | None, int | None, str
]
BAR_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "adj_close", "volume", "source")
_PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")


def bar_rows(symbol: str, bars: Iterable[Bar], *, source: str) -> list[BarRow]:
    """Database rows for `bars`; prices stay floats until Postgres casts them (see
    `upsert_bars`)."""
    return [
        (
            symbol,
            bar.date,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.adj_close,
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
    never_older: str | None = None,
) -> int:
    """COPY `records` into a temp table and merge them into `table`, changing only rows
    whose values differ; return how many rows were inserted or changed.

    With `never_older` (a timestamp column), a row is not replaced by one whose timestamp
    is older than (or lacks) the stored one: a late or redelivered write cannot roll it back.
    `table`, `columns`, `key` and `never_older` are trusted identifiers, never input.
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
    newer = (
        f" AND (t.{never_older} IS NULL OR excluded.{never_older} >= t.{never_older})"
        if never_older
        else ""
    )
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
            f"WHERE ({current}) IS DISTINCT FROM ({proposed}){newer}"
        )
    return int(status.rsplit(" ", 1)[-1])


async def upsert_bars(connection: asyncpg.Connection, rows: Sequence[BarRow]) -> int:
    """Merge `rows` into daily_prices in one transaction; return how many rows changed.

    Prices are COPYed as float8 and cast to the columns' numeric(20, 6) in the merge:
    Postgres turns a float8 into numeric through its 15 significant digits, so 123.4567
    is stored as 123.456700, and binary float8 is far cheaper to send than Decimals.
    """
    if not rows:
        return 0
    columns = ", ".join(BAR_COLUMNS)
    staged = ", ".join(f"{c}::numeric(20, 6)" if c in _PRICE_COLUMNS else c for c in BAR_COLUMNS)
    values = [c for c in BAR_COLUMNS if c not in ("symbol", "date")]
    current = ", ".join(f"t.{c}" for c in values)
    proposed = ", ".join(f"excluded.{c}" for c in values)
    async with connection.transaction():
        await ensure_assets(connection, sorted({row[0] for row in rows}))
        await connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS incoming_bar_floats (symbol text, date date, "
            "open float8, high float8, low float8, close float8, adj_close float8, "
            "volume bigint, source text) ON COMMIT DELETE ROWS"
        )
        await connection.copy_records_to_table(
            "incoming_bar_floats", records=rows, columns=BAR_COLUMNS
        )
        status: str = await connection.execute(
            f"INSERT INTO daily_prices AS t ({columns}) "  # noqa: S608 - constant identifiers
            f"SELECT DISTINCT ON (symbol, date) {staged} FROM incoming_bar_floats "
            "ORDER BY symbol, date "
            "ON CONFLICT (symbol, date) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in values)
            + f", updated_at = now() WHERE ({current}) IS DISTINCT FROM ({proposed})"
        )
    return int(status.rsplit(" ", 1)[-1])
