"""Read endpoints for market data: an asset's info, latest quote and freshness; its prices.

Prices are JSON numbers (stored to six decimal places, an FX pair's to ten); `close` is
split-adjusted and not dividend-adjusted, `adj_close` is both (docs/MARKET_DATA.md).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from service.api.openapi_responses import raises
from service.api.polled_reads import PolledQuery, polled_response
from service.api.problems import ProblemException
from service.core.clock import exchange_today
from service.core.contracts import SYMBOL_PATTERN
from service.core.trading_calendar import NYSE

MAX_PRICE_ROWS = 20_000
_PRICE_RANGE = """
    FROM daily_prices
    WHERE symbol = $1 AND ($2::date IS NULL OR date >= $2) AND ($3::date IS NULL OR date <= $3)
    ORDER BY date LIMIT $4
"""
# Whether findash knows the symbol, and the version (polled_reads.py) of the range: the
# transactions that wrote the symbol's prices (migrations/0013), the asset's row (which holds
# the body's currency) and the range's bounds.
PRICES_VERSION = """
    SELECT EXISTS (SELECT 1 FROM assets WHERE symbol = $1) AS known,
           (SELECT md5(concat_ws('|', (SELECT xmin::text FROM assets WHERE symbol = $1),
                                 coalesce($2::date::text, ''), coalesce($3::date::text, ''),
                                 $4::int::text,
                                 coalesce(string_agg(xid::text, ',' ORDER BY xid), '')))
            FROM price_writes WHERE symbol = $1) AS version
"""
PRICES_BODY = f"""
    SELECT json_build_object('symbol', $1::text,
        'currency', (SELECT currency FROM assets WHERE symbol = $1::text),
        'prices', coalesce(json_agg(json_build_object(
        'date', date, 'open', open, 'high', high, 'low', low, 'close', close,
        'adj_close', adj_close, 'volume', volume, 'source', source) ORDER BY date), '[]'))::text
    FROM (SELECT date, open, high, low, close, adj_close, volume, source {_PRICE_RANGE}) p
"""  # noqa: S608 - constant text
PRICES = PolledQuery(
    kind="prices", version_sql=PRICES_VERSION, body_sql=PRICES_BODY, exists="known"
)
SymbolPath = Annotated[
    str, Parameter(pattern=SYMBOL_PATTERN, description="Ticker, e.g. AAPL or BRK.B")
]


class QuoteView(msgspec.Struct, frozen=True):
    """The latest stored quote."""

    price: float
    currency: str | None
    market_time: datetime | None
    source: str
    updated_at: datetime


class FetchStateView(msgspec.Struct, frozen=True):
    """How fresh the stored history is and how the last attempt went."""

    last_attempt_at: datetime
    last_success_at: datetime | None
    last_stored_date: date | None
    last_error: str | None
    last_error_kind: str | None
    consecutive_failures: int
    provider: str | None
    stale: bool
    trading_days_behind: int | None


class AssetView(msgspec.Struct, frozen=True):
    """Reference data, latest quote and fetch state of one asset."""

    symbol: str
    name: str | None
    exchange: str | None
    currency: str | None
    asset_type: str | None
    sector: str | None
    industry: str | None
    country: str | None
    is_active: bool
    info_updated_at: datetime | None
    first_price_date: date | None
    last_price_date: date | None
    quote: QuoteView | None
    fetch_state: FetchStateView | None


class PriceView(msgspec.Struct, frozen=True):
    """One daily bar."""

    date: date
    open: float | None
    high: float | None
    low: float | None
    close: float
    adj_close: float | None
    volume: int | None
    source: str


class PricesView(msgspec.Struct, frozen=True):
    """A symbol's daily bars, oldest first, in `currency` (as the provider quotes it: `GBp`
    is pence; null when not yet known)."""

    symbol: str
    currency: str | None
    prices: list[PriceView]


PRICE_RESPONSES = {
    200: ResponseSpec(
        PricesView,
        description="The bars, oldest first. Carries `ETag` and `Cache-Control: private, "
        "no-cache`.",
        generate_examples=False,
    ),
    304: ResponseSpec(
        None, description="`If-None-Match` named the current ETag: no bar in the range changed."
    ),
}


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def trading_days_behind(last_stored: date | None, *, today: date) -> int | None:
    """Completed NYSE sessions after `last_stored` up to yesterday (today's may be running)."""
    if last_stored is None:
        return None
    return max(0, len(NYSE.trading_days(last_stored, today)) - 1 - int(NYSE.is_trading_day(today)))


async def _asset_row(pool: asyncpg.Pool, symbol: str) -> asyncpg.Record:
    row = await pool.fetchrow(
        """
        SELECT a.*, q.price, q.currency AS quote_currency, q.market_time, q.source AS quote_source,
               q.updated_at AS quote_updated_at,
               f.last_attempt_at, f.last_success_at, f.last_stored_date, f.last_error,
               f.last_error_kind, f.consecutive_failures, f.provider,
               (SELECT min(date) FROM daily_prices p WHERE p.symbol = a.symbol) AS first_date,
               (SELECT max(date) FROM daily_prices p WHERE p.symbol = a.symbol) AS last_date
        FROM assets a
        LEFT JOIN latest_quotes q ON q.symbol = a.symbol
        LEFT JOIN fetch_state f ON f.symbol = a.symbol
        WHERE a.symbol = $1
        """,
        symbol,
    )
    if row is None:
        raise ProblemException(status=404, detail=f"unknown symbol {symbol}")
    return row


def asset_view(row: asyncpg.Record | dict[str, Any], *, today: date) -> AssetView:
    """Shape a joined asset row for the API."""
    quote = (
        QuoteView(
            price=float(row["price"]),
            currency=row["quote_currency"],
            market_time=row["market_time"],
            source=row["quote_source"],
            updated_at=row["quote_updated_at"],
        )
        if row["price"] is not None
        else None
    )
    fetch_state = None
    if row["last_attempt_at"] is not None:
        behind = trading_days_behind(row["last_stored_date"], today=today)
        fetch_state = FetchStateView(
            last_attempt_at=row["last_attempt_at"],
            last_success_at=row["last_success_at"],
            last_stored_date=row["last_stored_date"],
            last_error=row["last_error"],
            last_error_kind=row["last_error_kind"],
            consecutive_failures=row["consecutive_failures"],
            provider=row["provider"],
            stale=behind is None or behind >= 1 or row["consecutive_failures"] > 0,
            trading_days_behind=behind,
        )
    return AssetView(
        symbol=row["symbol"],
        name=row["name"],
        exchange=row["exchange"],
        currency=row["currency"],
        asset_type=row["asset_type"],
        sector=row["sector"],
        industry=row["industry"],
        country=row["country"],
        is_active=row["is_active"],
        info_updated_at=row["info_updated_at"],
        first_price_date=row["first_date"],
        last_price_date=row["last_date"],
        quote=quote,
        fetch_state=fetch_state,
    )


class AssetController(Controller):
    """`/api/v1/assets`: what findash knows about an asset, and its daily prices."""

    path = "/assets"
    tags = ["assets"]

    @get("/{symbol:str}", summary="An asset's info, latest quote and fetch state")
    async def asset(self, state: State, symbol: SymbolPath) -> AssetView:
        """404 problem when findash has never stored the symbol."""
        row = await _asset_row(state.pool, symbol.upper())
        return asset_view(row, today=exchange_today(state.clock))

    @get(
        "/{symbol:str}/prices",
        summary="Daily prices, oldest first",
        responses=PRICE_RESPONSES,
        opt=raises(422),
    )
    async def prices(
        self,
        request: Request[Any, Any, State],
        symbol: SymbolPath,
        start: Annotated[date | None, Parameter(query="start", description="First date")] = None,
        end: Annotated[date | None, Parameter(query="end", description="Last date")] = None,
    ) -> Response[bytes]:
        """Bars in [start, end] (both optional); 422 when start is after end. Send the `ETag`
        back as `If-None-Match` to get 304 while no bar in the range changed."""
        if start is not None and end is not None and start > end:
            raise ProblemException(status=422, detail="invalid end: must be on or after start")
        name = symbol.upper()
        async with request.app.state.pool.acquire() as connection:
            response = await polled_response(
                connection,
                query=PRICES,
                args=(name, start, end, MAX_PRICE_ROWS),
                if_none_match=request.headers.get("if-none-match"),
                cache=request.app.state.bodies,
            )
        if response is None:
            raise ProblemException(status=404, detail=f"unknown symbol {name}")
        return response
