"""Everything market data stores: assets, daily bars, quotes, corporate actions, fetch state.

Writes are idempotent bulk merges: rows are COPYed into a temporary table and
merged with one `INSERT … ON CONFLICT DO UPDATE … WHERE <something changed>`,
so writing the same rows twice (Celery redelivers) leaves identical rows and
touches nothing. Reads feed the incremental planner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal

import asyncpg

from workers.market_data.plan import StoredRange
from workers.market_data.types import AssetInfo, Bar, History, Quote

BarRow = tuple[
    str, date, float | None, float | None, float | None, float, float | None, int | None, str
]
BAR_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "adj_close", "volume", "source")
_PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")
# An FX pair's rate (`EURUSD=X`: Yahoo's `=X` suffix, service/portfolio/fx.py) keeps ten
# decimal places, a price six. A suffix LIKE, not a regex: it runs for every column of every
# row, and a regex made the cast 33 % slower over a million rows where LIKE costs 1.5 %.
_STAGED_PRICE = "CASE WHEN symbol LIKE '%=X' THEN {c}::numeric(24, 10) ELSE {c}::numeric(20, 6) END"


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
    keep_known: Sequence[str] = (),
) -> int:
    """COPY `records` into a temp table and merge them into `table`, changing only rows
    whose values differ; return how many rows were inserted or changed.

    With `never_older` (a timestamp column), a row is not replaced by one whose timestamp
    is older than (or lacks) the stored one: a late or redelivered write cannot roll it back.
    A column in `keep_known` keeps its stored value when the incoming one is NULL.
    `table`, `columns`, `key`, `never_older` and `keep_known` are trusted identifiers.
    """
    if not records:
        return 0
    incoming = f"incoming_{table}"
    cols = ", ".join(columns)
    keys = ", ".join(key)
    values = [c for c in columns if c not in key]
    merged = {
        c: f"coalesce(excluded.{c}, t.{c})" if c in keep_known else f"excluded.{c}" for c in values
    }
    assignments = ", ".join(f"{c} = {merged[c]}" for c in values)
    current = ", ".join(f"t.{c}" for c in values)
    proposed = ", ".join(merged[c] for c in values)
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

    Prices are COPYed as float8 and rounded in the merge, to six decimal places, or ten for
    an FX pair (`JPYUSD=X` is about 0.0067; migrations/0015): Postgres turns a float8 into
    numeric through its 15 significant digits, so 123.4567 is stored as 123.456700, and
    binary float8 is far cheaper to send than Decimals.
    """
    if not rows:
        return 0
    columns = ", ".join(BAR_COLUMNS)
    staged = ", ".join(_STAGED_PRICE.format(c=c) if c in _PRICE_COLUMNS else c for c in BAR_COLUMNS)
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


_EIGHT_PLACES = Decimal("0.00000001")
_SIX_PLACES = Decimal("0.000001")


def _dec(value: float, places: Decimal) -> Decimal:
    return Decimal(repr(value)).quantize(places)


def dividend_rows(history: History, *, source: str) -> list[tuple[object, ...]]:
    """Rows for the dividends table."""
    return [
        (history.symbol, d.date, _dec(d.amount, _EIGHT_PLACES), d.pay_date, source)
        for d in history.dividends
    ]


def split_rows(history: History, *, source: str) -> list[tuple[object, ...]]:
    """Rows for the splits table."""
    return [
        (
            history.symbol,
            s.date,
            _dec(s.numerator, _EIGHT_PLACES),
            _dec(s.denominator, _EIGHT_PLACES),
            source,
        )
        for s in history.splits
    ]


def quote_rows(quotes: Sequence[tuple[Quote, str]]) -> list[tuple[object, ...]]:
    """Rows for the latest_quotes table."""
    return [
        (q.symbol, _dec(q.price, _SIX_PLACES), q.currency, q.market_time, source)
        for q, source in quotes
    ]


async def upsert_events(
    connection: asyncpg.Connection,
    *,
    dividends: Sequence[tuple[object, ...]],
    splits: Sequence[tuple[object, ...]],
    withdrawn: Sequence[tuple[str, date]] = (),
) -> int:
    """Merge dividend and split rows and delete the `withdrawn` (symbol, ex-date)
    dividends; return how many rows changed. A known pay date is never replaced by none
    (a provider without pay dates, failed over to, keeps the first one's)."""
    changed = await delete_dividends(connection, withdrawn)
    changed += await copy_upsert(
        connection,
        table="dividends",
        columns=("symbol", "ex_date", "amount", "pay_date", "source"),
        key=("symbol", "ex_date"),
        records=dividends,
        keep_known=("pay_date",),
    )
    return changed + await copy_upsert(
        connection,
        table="splits",
        columns=("symbol", "date", "numerator", "denominator", "source"),
        key=("symbol", "date"),
        records=splits,
    )


async def delete_dividends(
    connection: asyncpg.Connection, withdrawn: Sequence[tuple[str, date]]
) -> int:
    """Delete the dividends of these (symbol, ex-date) pairs; how many were deleted."""
    if not withdrawn:
        return 0
    status: str = await connection.execute(
        "DELETE FROM dividends d USING unnest($1::text[], $2::date[]) AS w (symbol, ex_date) "
        "WHERE d.symbol = w.symbol AND d.ex_date = w.ex_date",
        [symbol for symbol, _ in withdrawn],
        [day for _, day in withdrawn],
    )
    return int(status.rsplit(" ", 1)[-1])


async def upsert_quotes(connection: asyncpg.Connection, quotes: Sequence[tuple[Quote, str]]) -> int:
    """Merge latest quotes (creating bare assets as needed), never replacing a quote with an
    older one; return how many changed."""
    if not quotes:
        return 0
    async with connection.transaction():
        await ensure_assets(connection, sorted({q.symbol for q, _ in quotes}))
        return await copy_upsert(
            connection,
            table="latest_quotes",
            columns=("symbol", "price", "currency", "market_time", "source"),
            key=("symbol",),
            records=quote_rows(quotes),
            never_older="market_time",
        )


async def upsert_asset_info(connection: asyncpg.Connection, info: AssetInfo, *, source: str) -> int:
    """Merge one asset's reference data, keeping known values the provider left empty."""
    status: str = await connection.execute(
        """
        INSERT INTO assets AS t (symbol, name, exchange, currency, asset_type, sector, industry,
                                 country, description, info_source, info_updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
        ON CONFLICT (symbol) DO UPDATE SET
            name = coalesce(excluded.name, t.name),
            exchange = coalesce(excluded.exchange, t.exchange),
            currency = coalesce(excluded.currency, t.currency),
            asset_type = coalesce(excluded.asset_type, t.asset_type),
            sector = coalesce(excluded.sector, t.sector),
            industry = coalesce(excluded.industry, t.industry),
            country = coalesce(excluded.country, t.country),
            description = coalesce(excluded.description, t.description),
            info_source = excluded.info_source,
            info_updated_at = now(),
            is_active = true,
            updated_at = now()
        """,
        info.symbol,
        info.name,
        info.exchange,
        info.currency,
        info.asset_type,
        info.sector,
        info.industry,
        info.country,
        info.description,
        source,
    )
    return int(status.rsplit(" ", 1)[-1])


async def record_currencies(
    connection: asyncpg.Connection, currencies: Sequence[tuple[str, str]]
) -> None:
    """Store the currency each provider said (symbol, currency) a symbol's prices are in;
    an FX pair is typed `CURRENCY`. Codes keep their case (GBp is pence)."""
    if not currencies:
        return
    await connection.execute(
        """
        UPDATE assets a SET currency = c.currency,
            asset_type = CASE WHEN a.symbol ~ '^[A-Z]{6}=X$' THEN 'CURRENCY' ELSE a.asset_type END,
            updated_at = now()
        FROM unnest($1::text[], $2::text[]) AS c (symbol, currency)
        WHERE a.symbol = c.symbol AND a.currency IS DISTINCT FROM c.currency
        """,
        [symbol for symbol, _ in currencies],
        [currency for _, currency in currencies],
    )


async def record_successes(
    connection: asyncpg.Connection,
    successes: Sequence[tuple[str, date | None, str, date | None]],
    *,
    now: datetime,
) -> None:
    """Mark (symbol, last stored date, provider, first available date) as fetched at `now`;
    failures reset to zero.

    The first available date (the provider has nothing earlier) only ever moves earlier and
    never past the first stored bar, so a redelivered or older write cannot hide history.
    """
    if not successes:
        return
    await connection.execute(
        """
        INSERT INTO fetch_state AS f (symbol, last_attempt_at, last_success_at, last_stored_date,
                                      consecutive_failures, provider, first_available_date)
        SELECT s.symbol, $5, $5, s.last_date, 0, s.provider,
               CASE WHEN s.first_available IS NOT NULL THEN LEAST(
                   s.first_available,
                   (SELECT min(p.date) FROM daily_prices p WHERE p.symbol = s.symbol)
               ) END
        FROM unnest($1::text[], $2::date[], $3::text[], $4::date[])
             AS s(symbol, last_date, provider, first_available)
        ON CONFLICT (symbol) DO UPDATE SET
            last_attempt_at = excluded.last_attempt_at,
            last_success_at = excluded.last_success_at,
            last_stored_date = GREATEST(f.last_stored_date, excluded.last_stored_date),
            first_available_date = LEAST(f.first_available_date, excluded.first_available_date),
            last_error = NULL, last_error_kind = NULL, consecutive_failures = 0,
            provider = excluded.provider, updated_at = now()
        """,
        [s for s, _, _, _ in successes],
        [d for _, d, _, _ in successes],
        [p for _, _, p, _ in successes],
        [a for _, _, _, a in successes],
        now,
    )
    await connection.execute(
        "UPDATE assets SET is_active = true WHERE symbol = ANY($1::text[]) AND NOT is_active",
        [s for s, _, _, _ in successes],
    )


async def record_failures(
    connection: asyncpg.Connection,
    failures: Sequence[tuple[str, str, str]],
    *,
    now: datetime,
) -> None:
    """Record (symbol, error kind, reason) for symbols already known as assets; unknown
    symbols leave no rows behind. A known asset the providers no longer know goes inactive."""
    if not failures:
        return
    symbols = [s for s, _, _ in failures]
    await connection.execute(
        """
        INSERT INTO fetch_state AS f (symbol, last_attempt_at, last_error, last_error_kind,
                                      consecutive_failures)
        SELECT s.symbol, $4, s.reason, s.kind, 1
        FROM unnest($1::text[], $2::text[], $3::text[]) AS s(symbol, kind, reason)
        WHERE EXISTS (SELECT 1 FROM assets a WHERE a.symbol = s.symbol)
        ON CONFLICT (symbol) DO UPDATE SET
            last_attempt_at = excluded.last_attempt_at,
            last_error = excluded.last_error, last_error_kind = excluded.last_error_kind,
            consecutive_failures = f.consecutive_failures + 1, updated_at = now()
        """,
        symbols,
        [k for _, k, _ in failures],
        [r for _, _, r in failures],
        now,
    )
    await connection.execute(
        "UPDATE assets SET is_active = false WHERE symbol = ANY($1::text[]) AND is_active",
        [s for s, k, _ in failures if k == "not_found"],
    )


async def stored_ranges(
    connection: asyncpg.Connection, symbols: Sequence[str]
) -> dict[str, StoredRange]:
    """First and last stored bar date per symbol that has any, with the first date its
    provider has when an earlier fetch learned it."""
    rows = await connection.fetch(
        """
        SELECT p.symbol, p.first, p.last, f.first_available_date
        FROM (
            SELECT symbol, min(date) AS first, max(date) AS last FROM daily_prices
            WHERE symbol = ANY($1::text[]) GROUP BY symbol
        ) AS p
        LEFT JOIN fetch_state f ON f.symbol = p.symbol
        """,
        list(symbols),
    )
    return {
        r["symbol"]: StoredRange(r["first"], r["last"], r["first_available_date"]) for r in rows
    }


async def known_events(
    connection: asyncpg.Connection, symbols: Sequence[str]
) -> tuple[dict[str, set[date]], dict[str, set[date]]]:
    """Stored split dates and dividend ex-dates per symbol."""
    splits: dict[str, set[date]] = {}
    dividends: dict[str, set[date]] = {}
    for row in await connection.fetch(
        "SELECT symbol, date FROM splits WHERE symbol = ANY($1::text[])", list(symbols)
    ):
        splits.setdefault(row["symbol"], set()).add(row["date"])
    for row in await connection.fetch(
        "SELECT symbol, ex_date FROM dividends WHERE symbol = ANY($1::text[])", list(symbols)
    ):
        dividends.setdefault(row["symbol"], set()).add(row["ex_date"])
    return splits, dividends


async def invalidate_snapshots_after_splits(
    connection: asyncpg.Connection, new_splits: Sequence[tuple[str, date]]
) -> int:
    """Drop snapshots dated on or after a newly stored split of a symbol the portfolio
    traded: they were valued with the pre-split share count, and the next snapshot or
    performance run rebuilds them. Returns how many were dropped."""
    if not new_splits:
        return 0
    status: str = await connection.execute(
        """
        DELETE FROM portfolio_snapshots ps
        USING (
            SELECT t.portfolio_id, min(x.date) AS since
            FROM unnest($1::text[], $2::date[]) AS x (symbol, date)
            JOIN transactions t ON t.symbol = x.symbol
            GROUP BY t.portfolio_id
        ) AS hit
        WHERE ps.portfolio_id = hit.portfolio_id AND ps.date >= hit.since
        """,
        [symbol for symbol, _ in new_splits],
        [day for _, day in new_splits],
    )
    return int(status.rsplit(" ", 1)[-1])
