"""Postgres access for portfolios and transactions, always scoped to the owner."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import asyncpg
import msgspec

from service.core.trading_calendar import TradingCalendar
from service.portfolio.fx import MAX_RATE_AGE_DAYS, FxRates, major, pair_symbol
from service.portfolio.positions import Split, Transaction, TxType
from service.portfolio.pricing import StoredQuote
from service.portfolio.schemas import TransactionCreate

# The value columns of `portfolio_snapshots` (migrations/0004), in table order.
SNAPSHOT_VALUE_COLUMNS = (
    "total_value",
    "market_value",
    "cash",
    "cost_basis",
    "unrealized_pnl",
    "realized_pnl",
    "income",
    "fees",
    "net_invested",
    "net_flow",
    "day_change",
)

PORTFOLIO_COLUMNS = "id, name, base_currency, created_at, auto_dividends"
_GET_PORTFOLIO = f"SELECT {PORTFOLIO_COLUMNS} FROM portfolios WHERE id = $1 AND owner_id = $2"  # noqa: S608 - constant text


async def create_portfolio(
    connection: asyncpg.Connection,
    *,
    owner_id: int,
    name: str,
    base_currency: str,
    auto_dividends: bool = False,
) -> asyncpg.Record | None:
    """Insert a portfolio; None when the owner already has one by that name."""
    row: asyncpg.Record | None = await connection.fetchrow(
        "INSERT INTO portfolios (owner_id, name, base_currency, auto_dividends) "  # noqa: S608 - constant text
        "VALUES ($1, $2, $3, $4) ON CONFLICT (owner_id, name) DO NOTHING "
        f"RETURNING {PORTFOLIO_COLUMNS}",
        owner_id,
        name,
        base_currency,
        auto_dividends,
    )
    return row


async def set_auto_dividends(
    connection: asyncpg.Connection, *, portfolio_id: int, auto_dividends: bool
) -> asyncpg.Record:
    """Switch generated dividends on or off for a portfolio the caller has locked."""
    row: asyncpg.Record = await connection.fetchrow(
        f"UPDATE portfolios SET auto_dividends = $2 WHERE id = $1 RETURNING {PORTFOLIO_COLUMNS}",  # noqa: S608 - constant text
        portfolio_id,
        auto_dividends,
    )
    return row


async def list_portfolios(connection: asyncpg.Connection, *, owner_id: int) -> list[asyncpg.Record]:
    """The owner's portfolios, oldest first."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"SELECT {PORTFOLIO_COLUMNS} FROM portfolios WHERE owner_id = $1 ORDER BY id",  # noqa: S608 - constant text
        owner_id,
    )
    return rows


async def get_portfolio(
    connection: asyncpg.Connection, *, portfolio_id: int, owner_id: int, lock: bool = False
) -> asyncpg.Record | None:
    """The owner's portfolio (row-locked when `lock`, serialising its transaction writes)."""
    query = _GET_PORTFOLIO + (" FOR UPDATE" if lock else "")
    row: asyncpg.Record | None = await connection.fetchrow(
        query,
        portfolio_id,
        owner_id,
    )
    return row


async def delete_portfolio(
    connection: asyncpg.Connection, *, portfolio_id: int, owner_id: int
) -> bool:
    """Delete the owner's portfolio with everything under it; False if there was none."""
    status: str = await connection.execute(
        "DELETE FROM portfolios WHERE id = $1 AND owner_id = $2", portfolio_id, owner_id
    )
    return status == "DELETE 1"


def transaction_from_row(row: asyncpg.Record) -> Transaction:
    """A `transactions` row as the pure core's Transaction."""
    return Transaction(
        id=row["id"],
        type=row["type"],
        date=row["date"],
        symbol=row["symbol"],
        quantity=row["quantity"],
        price=row["price"],
        amount=row["amount"],
        fee=row["fee"],
        currency=row["currency"],
        fx_rate=row["fx_rate"],
        note=row["note"],
        generated_ex_date=row["generated_ex_date"],
    )


TRANSACTION_COLUMNS = (
    "id, type, date, symbol, quantity, price, amount, fee, currency, fx_rate, note, "
    "generated_ex_date"
)
_LIST_TRANSACTIONS = (
    f"SELECT {TRANSACTION_COLUMNS} FROM transactions "  # noqa: S608 - constant text
    "WHERE portfolio_id = $1 ORDER BY date, id"
)


async def list_transactions(connection: asyncpg.Connection, portfolio_id: int) -> list[Transaction]:
    """The portfolio's transactions in the order they apply."""
    rows = await connection.fetch(
        _LIST_TRANSACTIONS,
        portfolio_id,
    )
    return [transaction_from_row(row) for row in rows]


_INSERT_TRANSACTIONS = (
    "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price, amount, fee, "  # noqa: S608 - constant text
    "currency, fx_rate, note) "
    "SELECT $1, t.type, t.date, t.symbol, t.quantity, t.price, t.amount, t.fee, t.currency, "
    "t.fx_rate, t.note FROM unnest($2::text[], $3::date[], $4::text[], $5::numeric[], "
    "$6::numeric[], $7::numeric[], $8::numeric[], $9::text[], $10::numeric[], $11::text[]) "
    "WITH ORDINALITY AS t(type, date, symbol, quantity, price, amount, fee, currency, fx_rate, "
    f"note, n) ORDER BY t.n RETURNING {TRANSACTION_COLUMNS}"
)


async def insert_transactions(
    connection: asyncpg.Connection, *, portfolio_id: int, rows: Sequence[TransactionCreate]
) -> list[Transaction]:
    """Record many transactions in one statement, in the given order; the recorded ones,
    ids ascending."""
    if not rows:
        return []
    columns = ("type", "date", "symbol", "quantity", "price", "amount", "fee", "currency")
    arrays = [[getattr(row, name) for row in rows] for name in (*columns, "fx_rate", "note")]
    recorded = await connection.fetch(_INSERT_TRANSACTIONS, portfolio_id, *arrays)
    return sorted((transaction_from_row(row) for row in recorded), key=lambda tx: tx.id)


async def delete_transaction(
    connection: asyncpg.Connection, *, portfolio_id: int, transaction_id: int
) -> date | None:
    """Delete one transaction; its date, or None if the portfolio has no such transaction."""
    found: date | None = await connection.fetchval(
        "DELETE FROM transactions WHERE id = $1 AND portfolio_id = $2 RETURNING date",
        transaction_id,
        portfolio_id,
    )
    return found


async def invalidate_snapshots(
    connection: asyncpg.Connection, *, portfolio_id: int, since: date
) -> None:
    """Drop snapshots a changed transaction makes stale; the next snapshot task rebuilds them."""
    await connection.execute(
        "DELETE FROM portfolio_snapshots WHERE portfolio_id = $1 AND date >= $2",
        portfolio_id,
        since,
    )


async def load_splits(
    connection: asyncpg.Connection, symbols: Sequence[str]
) -> dict[str, list[Split]]:
    """Stored splits of `symbols` (the market-data work's table), dates ascending."""
    splits: dict[str, list[Split]] = defaultdict(list)
    if not symbols:
        return {}
    for row in await connection.fetch(
        "SELECT symbol, date, numerator, denominator FROM splits "
        "WHERE symbol = ANY($1::text[]) ORDER BY symbol, date",
        sorted(set(symbols)),
    ):
        splits[row["symbol"]].append(
            Split(
                symbol=row["symbol"],
                date=row["date"],
                numerator=int(row["numerator"]),
                denominator=int(row["denominator"]),
            )
        )
    return dict(splits)


def candidate_pairs(currencies: Iterable[str | None], bases: Iterable[str]) -> list[str]:
    """Every stored pair a conversion of `currencies` into `bases` may read: direct, inverse,
    and both legs of a cross through USD."""
    majors = {major(c)[0] for c in currencies if c is not None} | set(bases)
    pairs = set()
    for base in bases:
        for currency in majors - {base}:
            pairs |= {pair_symbol(currency, base), pair_symbol(base, currency)}
    for currency in majors - {"USD"}:
        pairs |= {pair_symbol(currency, "USD"), pair_symbol("USD", currency)}
    return sorted(pairs)


async def load_rates(
    connection: asyncpg.Connection, pairs: Sequence[str], *, start: date, end: date
) -> FxRates:
    """Stored closes of `pairs` in [start - MAX_RATE_AGE_DAYS, end]."""
    if not pairs:
        return FxRates()
    rows = await connection.fetch(
        "SELECT symbol, date, close FROM daily_prices "
        "WHERE symbol = ANY($1::text[]) AND date BETWEEN $2 AND $3",
        list(pairs),
        start - timedelta(days=MAX_RATE_AGE_DAYS),
        end,
    )
    closes: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    for row in rows:
        closes[row["symbol"]].append((row["date"], row["close"]))
    return FxRates.from_closes(closes)


async def asset_currencies(
    connection: asyncpg.Connection, symbols: Sequence[str]
) -> dict[str, str]:
    """The quote currency stored for each of `symbols` that has one."""
    if not symbols:
        return {}
    rows = await connection.fetch(
        "SELECT symbol, currency FROM assets "
        "WHERE symbol = ANY($1::text[]) AND currency IS NOT NULL",
        list(symbols),
    )
    return {row["symbol"]: row["currency"] for row in rows}


class _TxRow(msgspec.Struct, frozen=True):
    id: int
    type: TxType
    date: date
    symbol: str | None
    quantity: Decimal | None
    price: Decimal | None
    amount: Decimal | None
    fee: Decimal
    currency: str | None = None
    fx_rate: Decimal | None = None


class _SplitRow(msgspec.Struct, frozen=True):
    symbol: str
    date: date
    numerator: Decimal
    denominator: Decimal


class _CloseRow(msgspec.Struct, frozen=True):
    symbol: str
    date: date
    close: Decimal


class _QuoteRow(msgspec.Struct, frozen=True):
    symbol: str
    price: Decimal
    market_time: datetime | None


class _ClosureRow(msgspec.Struct, frozen=True):
    day: date
    closes_at: time | None


class _CurrencyRow(msgspec.Struct, frozen=True):
    symbol: str
    currency: str


class _HoldingsRow(msgspec.Struct, frozen=True):
    base: str
    currencies: list[_CurrencyRow]
    transactions: list[_TxRow]
    splits: list[_SplitRow]
    closes: list[_CloseRow]
    quotes: list[_QuoteRow]
    closures: list[_ClosureRow]


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldingsReads:
    """Everything `GET …/holdings` reads, from one statement."""

    base: str
    currencies: dict[str, str]
    transactions: list[Transaction]
    splits: dict[str, list[Split]]
    closes: dict[str, tuple[date, Decimal]]
    quotes: dict[str, StoredQuote]
    calendar: TradingCalendar


# What a holdings valuation reads: the calendar's overrides whole, the rest through the
# portfolio's transactions and the symbols they hold.
_HOLDINGS_INPUTS = """
WITH owned AS (
    SELECT id, base_currency FROM portfolios WHERE id = $1 AND owner_id = $2
),
tx AS (
    SELECT t.id, t.type, t.date, t.symbol, t.quantity, t.price, t.amount, t.fee, t.currency,
           t.fx_rate
    FROM transactions t JOIN owned ON owned.id = t.portfolio_id
),
held AS (SELECT DISTINCT symbol FROM tx WHERE symbol IS NOT NULL),
closes AS (
    SELECT p.* FROM held CROSS JOIN LATERAL (
        SELECT d.symbol, d.date, d.close FROM daily_prices d
        WHERE d.symbol = held.symbol AND d.date <= $3 ORDER BY d.date DESC LIMIT 1
    ) AS p
),
quotes AS (
    SELECT q.symbol, q.price, q.market_time
    FROM latest_quotes q JOIN held USING (symbol) WHERE $4
),
currencies AS (SELECT a.symbol, a.currency FROM assets a JOIN held USING (symbol)),
held_splits AS (
    SELECT s.symbol, s.date, s.numerator, s.denominator FROM splits s JOIN held USING (symbol)
)
"""


def _holdings_version(*, held: str, with_quotes: str) -> str:
    """SQL: the version of what a valuation of the symbols `held` (a text[] expression),
    with their quotes if `with_quotes` (a boolean expression), reads: every row version
    (`xmin`, new on each insert and update) it sees, or the writing transactions logged for
    them, each input in its own slot and a fixed order, so equal versions mean equal reads.
    The portfolio's row stands for its transactions: every write to them updates it
    (migrations/0012), and so for the held symbols too. Closes are versioned by the
    transactions that wrote the symbols' bars (price_writes, migrations/0013): a few index
    entries, where the closes take a probe per symbol.

    Each input is looked up by the symbols directly (`= ANY`), a few index probes; joined
    through CTEs, as the reads are, the same version cost Postgres about twice the CPU,
    and a dashboard polls it."""
    return f"""md5(concat_ws('|',
    coalesce((SELECT xmin::text FROM portfolios WHERE id = $1 AND owner_id = $2), ''),
    coalesce((SELECT string_agg(symbol || ':' || xmin::text, ',' ORDER BY symbol)
              FROM assets WHERE symbol = ANY({held})), ''),
    coalesce((SELECT string_agg(symbol || date::text || ':' || xmin::text, ','
                                ORDER BY symbol, date)
              FROM splits WHERE symbol = ANY({held})), ''),
    coalesce((SELECT string_agg(symbol || ':' || xid::text, ',' ORDER BY symbol, xid)
              FROM price_writes WHERE symbol = ANY({held})), ''),
    coalesce((SELECT string_agg(symbol || ':' || xmin::text, ',' ORDER BY symbol)
              FROM latest_quotes WHERE symbol = ANY({held}) AND {with_quotes}), ''),
    coalesce((SELECT string_agg(day::text || ':' || xmin::text, ',' ORDER BY day)
              FROM market_closures), '')
))"""  # noqa: S608 - expressions of this module, not input


# The statement's mark (InputsMark): the portfolio's row version, the oldest transaction
# still running when its snapshot was taken, and a digest of the input writes logged from
# there on that it sees (migrations/0014): as many as a long-open writer lets pile up, kept
# per answer at a fixed size.
def _writes_since(since: str) -> str:
    """SQL: the digest of the valuation input writes logged from transaction `since` (an
    xid8 expression) on; one definition, so a mark and its check digest alike."""
    return f"""(SELECT md5(coalesce(string_agg(xid::text, ',' ORDER BY xid), ''))
        FROM valuation_input_writes WHERE xid >= {since})"""  # noqa: S608 - an expression


_INPUTS_MARK = f"""
       (SELECT xmin::text FROM portfolios WHERE id = $1 AND owner_id = $2) AS portfolio_version,
       pg_snapshot_xmin(pg_current_snapshot())::text AS writes_since,
       {_writes_since("pg_snapshot_xmin(pg_current_snapshot())")} AS writes"""  # noqa: S608 - constant text
_INPUTS_UNCHANGED = f"""
SELECT xmin::text AS portfolio_version, {_writes_since("$3::text::xid8")} AS writes
FROM portfolios WHERE id = $1 AND owner_id = $2
"""  # noqa: S608 - constant text
# Numbers travel as text, so they decode into Decimal exactly.
_HOLDINGS_READS = f"""{_HOLDINGS_INPUTS}
SELECT (SELECT count(*) FROM owned) AS owned,
       {_holdings_version(held="ARRAY(SELECT symbol FROM held)", with_quotes="$4")} AS version,
       {_INPUTS_MARK},
json_build_object(
    'base', (SELECT base_currency FROM owned),
    'currencies', (SELECT coalesce(json_agg(json_build_object(
        'symbol', symbol, 'currency', currency)), '[]')
        FROM currencies WHERE currency IS NOT NULL),
    'transactions', (SELECT coalesce(json_agg(json_build_object(
        'id', id, 'type', type, 'date', date, 'symbol', symbol, 'quantity', quantity::text,
        'price', price::text, 'amount', amount::text, 'fee', fee::text,
        'currency', currency, 'fx_rate', fx_rate::text) ORDER BY date, id), '[]')
        FROM tx),
    'splits', (SELECT coalesce(json_agg(json_build_object(
        'symbol', symbol, 'date', date, 'numerator', numerator::text,
        'denominator', denominator::text) ORDER BY symbol, date), '[]')
        FROM held_splits),
    'closes', (SELECT coalesce(json_agg(json_build_object(
        'symbol', symbol, 'date', date, 'close', close::text)), '[]') FROM closes),
    'quotes', (SELECT coalesce(json_agg(json_build_object(
        'symbol', symbol, 'price', price::text, 'market_time', market_time)), '[]')
        FROM quotes),
    'closures', (SELECT coalesce(json_agg(json_build_object(
        'day', day, 'closes_at', closes_at)), '[]') FROM market_closures)
)::text AS reads
"""  # noqa: S608 - constant text


def _rates_version(pairs: str) -> str:
    """SQL: the version of the stored closes of `pairs` (a parameter reference): the
    transactions that wrote them (price_writes, migrations/0013); null without pairs."""
    return f"""CASE WHEN cardinality({pairs}::text[]) > 0 THEN (
        SELECT md5(coalesce(string_agg(symbol || ':' || xid::text, ',' ORDER BY symbol, xid), ''))
        FROM price_writes WHERE symbol = ANY({pairs}::text[])
    ) END"""  # noqa: S608 - a parameter reference


_HOLDINGS_VERSIONS = f"""
SELECT EXISTS (SELECT FROM portfolios WHERE id = $1 AND owner_id = $2) AS owned,
       {_holdings_version(held="$4::text[]", with_quotes="$3")} AS version,
       {_rates_version("$5")} AS rates_version, {_INPUTS_MARK}
"""  # noqa: S608 - constant text
_RATES_WITH_VERSION = f"""
SELECT v.rates_version, r.symbol, r.date, r.close
FROM (SELECT {_rates_version("$1")} AS rates_version) AS v
LEFT JOIN (
    SELECT symbol, date, close FROM daily_prices
    WHERE symbol = ANY($1::text[]) AND date BETWEEN $2 AND $3
) AS r ON true
"""  # noqa: S608 - constant text


@dataclass(frozen=True, slots=True)
class InputsMark:
    """Where a statement that read holdings' inputs stood: the portfolio's row version, the
    oldest transaction running at its snapshot (`since`), and a digest of the input writes
    from there on that it saw. A transaction committing after it has an id at least
    `since`, so while `inputs_unchanged` finds the same, none of the inputs changed."""

    portfolio_version: str
    since: str
    writes: str

    @classmethod
    def of(cls, row: asyncpg.Record) -> InputsMark:
        return cls(
            portfolio_version=row["portfolio_version"],
            since=row["writes_since"],
            writes=row["writes"],
        )


async def inputs_unchanged(
    connection: asyncpg.Connection, *, portfolio_id: int, owner_id: int, mark: InputsMark
) -> bool | None:
    """Whether nothing a holdings valuation of the owner's portfolio reads was written since
    `mark` (a write elsewhere counts too: the check is one row and one index's top, not
    every input); None when the portfolio is not the owner's."""
    row = await connection.fetchrow(_INPUTS_UNCHANGED, portfolio_id, owner_id, mark.since)
    if row is None:
        return None
    return (row["portfolio_version"], row["writes"]) == (mark.portfolio_version, mark.writes)


@dataclass(frozen=True, slots=True)
class HoldingsReadsText:
    """`holdings_reads_text`'s answer: the reads as JSON text, their version and mark."""

    text: str
    version: str
    mark: InputsMark


async def holdings_reads_text(
    connection: asyncpg.Connection,
    *,
    portfolio_id: int,
    owner_id: int,
    on_or_before: date,
    with_quotes: bool,
) -> HoldingsReadsText | None:
    """The owner's portfolio's transactions, its symbols' splits, last closes on or before a
    date and (`with_quotes`) latest quotes, and the calendar overrides, in one round trip, as
    JSON text for `decode_holdings_reads` (equal texts, equal inputs) with the version
    `holdings_versions` answers for them; None when the portfolio is not the owner's."""
    row = await connection.fetchrow(
        _HOLDINGS_READS, portfolio_id, owner_id, on_or_before, with_quotes
    )
    if row is None or not row["owned"]:
        return None
    return HoldingsReadsText(text=row["reads"], version=row["version"], mark=InputsMark.of(row))


@dataclass(frozen=True, slots=True)
class HoldingsVersions:
    """The versions of a holdings valuation's reads and of the FX rates it read."""

    reads: str
    rates: str | None


async def holdings_versions(
    connection: asyncpg.Connection,
    *,
    portfolio_id: int,
    owner_id: int,
    with_quotes: bool,
    held: Sequence[str],
    pairs: Sequence[str],
) -> tuple[HoldingsVersions, InputsMark] | None:
    """The current versions of what `holdings_reads_text` and `load_versioned_rates` (of
    `pairs`) read, and the mark, from one statement, without the reads, given the symbols
    those reads found `held`; None when the portfolio is not the owner's."""
    row = await connection.fetchrow(
        _HOLDINGS_VERSIONS,
        portfolio_id,
        owner_id,
        with_quotes,
        list(held),
        list(pairs),
    )
    if row is None or not row["owned"]:
        return None
    versions = HoldingsVersions(reads=row["version"], rates=row["rates_version"])
    return versions, InputsMark.of(row)


async def load_versioned_rates(
    connection: asyncpg.Connection, pairs: Sequence[str], *, on_or_before: date
) -> tuple[FxRates, str | None]:
    """`load_rates` for the one day `on_or_before`, with the version `holdings_versions`
    answers for them, from one statement."""
    rows = await connection.fetch(
        _RATES_WITH_VERSION,
        list(pairs),
        on_or_before - timedelta(days=MAX_RATE_AGE_DAYS),
        on_or_before,
    )
    closes: dict[str, list[tuple[date, Decimal]]] = defaultdict(list)
    for row in rows:
        if row["symbol"] is not None:
            closes[row["symbol"]].append((row["date"], row["close"]))
    return FxRates.from_closes(closes), rows[0]["rates_version"]


def decode_holdings_reads(text: str) -> HoldingsReads:
    """The reads of `holdings_reads_text`, decoded."""
    reads = msgspec.json.decode(text, type=_HoldingsRow)
    splits: dict[str, list[Split]] = defaultdict(list)
    for split in reads.splits:
        splits[split.symbol].append(
            Split(
                symbol=split.symbol,
                date=split.date,
                numerator=int(split.numerator),
                denominator=int(split.denominator),
            )
        )
    return HoldingsReads(
        base=reads.base,
        currencies={c.symbol: c.currency for c in reads.currencies},
        transactions=[Transaction(**msgspec.structs.asdict(tx)) for tx in reads.transactions],
        splits=dict(splits),
        closes={c.symbol: (c.date, c.close) for c in reads.closes},
        quotes={
            q.symbol: StoredQuote(price=q.price, market_time=q.market_time) for q in reads.quotes
        },
        calendar=TradingCalendar(
            closures=[c.day for c in reads.closures if c.closes_at is None],
            early_closes={c.day: c.closes_at for c in reads.closures if c.closes_at is not None},
        ),
    )
