"""Polygon (Massive): aggregates per ticker, grouped daily per market date, reference data.

`adjusted=true` bars are split-adjusted only, so `close` is taken as is and
`adj_close` is derived from Polygon's dividends (CRSP method, as Yahoo does).
Bars are fetched through today even for an earlier `end`, so every later
split and dividend is known when adjusting; the window is trimmed after.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

import msgspec

from service.core.clock import Clock, exchange_today
from service.core.trading_calendar import EXCHANGE_TZ, NYSE
from service.portfolio.fx import is_pair, pair_currencies
from workers.market_data.providers.adjust import dividend_adjusted, split_factor_after
from workers.market_data.providers.base import ErrorKind, ProviderError, decode_payload
from workers.market_data.providers.symbols import provider_symbol
from workers.market_data.providers.transport import Reply, Transport
from workers.market_data.types import AssetInfo, Bar, Dividend, History, Quote, Split

NAME = "polygon"
T = TypeVar("T")
MAX_PAGES = 20
GROUPED_LOOKBACK_DAYS = 5


class _Agg(msgspec.Struct):
    t: int
    c: float
    o: float | None = None
    h: float | None = None
    low: float | None = msgspec.field(default=None, name="l")
    v: float | None = None
    T: str | None = None


class _Aggs(msgspec.Struct):
    status: str = ""
    results: list[_Agg] = []
    next_url: str | None = None
    error: str | None = None


class _DividendRow(msgspec.Struct):
    ex_dividend_date: date
    cash_amount: float
    # Kept as text: a missing, empty or odd pay date must not make the whole answer MALFORMED.
    pay_date: str | None = None


class _SplitRow(msgspec.Struct):
    execution_date: date
    split_from: float
    split_to: float


class _Dividends(msgspec.Struct):
    results: list[_DividendRow] = []
    next_url: str | None = None


class _Splits(msgspec.Struct):
    results: list[_SplitRow] = []


class _Ticker(msgspec.Struct):
    ticker: str
    name: str | None = None
    primary_exchange: str | None = None
    currency_name: str | None = None
    type: str | None = None
    sic_description: str | None = None
    description: str | None = None
    locale: str | None = None


class _TickerEnvelope(msgspec.Struct):
    results: _Ticker | None = None


class _ErrorBody(msgspec.Struct):
    error: str | None = None
    message: str | None = None


def _decode(reply: Reply, kind: type[T]) -> T:
    check_status(reply)
    return decode_body(reply.body, kind)


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decode a Polygon body into `kind`; a body that does not fit is a MALFORMED error."""
    return decode_payload(body, kind, provider=NAME)


def check_status(reply: Reply) -> None:
    """Raise the error a non-200 Polygon reply means (429/5xx were raised by the transport)."""
    if reply.status == 200:
        return
    try:
        body = msgspec.json.decode(reply.body, type=_ErrorBody)
        message = body.error or body.message or f"HTTP {reply.status}"
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = f"HTTP {reply.status}"
    kind = ErrorKind.NOT_FOUND if reply.status == 404 else ErrorKind.PERMANENT
    raise ProviderError(kind, f"{NAME}: {message}", provider=NAME)


def exchange_date(millis: int) -> date:
    """The New York date of a bar stamped in unix milliseconds."""
    return datetime.fromtimestamp(millis / 1000, tz=EXCHANGE_TZ).date()


def agg_bars(aggs: list[_Agg]) -> list[Bar]:
    """Bars from aggregates, one per exchange date (a later duplicate wins); adj_close = close."""
    by_date: dict[date, Bar] = {}
    for agg in aggs:
        day = exchange_date(agg.t)
        by_date[day] = Bar(
            date=day,
            open=agg.o,
            high=agg.h,
            low=agg.low,
            close=agg.c,
            adj_close=agg.c,
            volume=None if agg.v is None else round(agg.v),
        )
    return [by_date[day] for day in sorted(by_date)]


def pay_date_of(row: _DividendRow) -> date | None:
    """A dividend's pay date: None when Polygon gives none, one that is not an ISO date, or
    one before the ex-date (which the `dividends` table would refuse)."""
    try:
        paid = date.fromisoformat(row.pay_date) if row.pay_date else None
    except ValueError:
        return None
    return paid if paid is not None and paid >= row.ex_dividend_date else None


def build_history(
    symbol: str,
    *,
    aggs: list[_Agg],
    dividends: list[_DividendRow],
    splits: list[_SplitRow],
    start: date,
    end: date,
    currency: str = "USD",
    dividends_complete: bool = True,
) -> History:
    """Split-adjusted bars with dividend-adjusted `adj_close`, trimmed to [start, end].

    `aggs` must run through the latest dividend so each one can be priced. Polygon's
    stocks are US listings, quoted in USD; a forex pair is quoted in its second currency.
    """
    split_events = sorted(
        (
            Split(date=s.execution_date, numerator=s.split_to, denominator=s.split_from)
            for s in splits
            if s.split_from > 0 and s.split_to > 0
        ),
        key=lambda s: s.date,
    )
    # Polygon's cash amounts are as paid; per split-adjusted share they shrink by later splits.
    events = sorted(
        (
            Dividend(
                date=d.ex_dividend_date,
                amount=round(
                    d.cash_amount / split_factor_after(d.ex_dividend_date, split_events), 8
                ),
                pay_date=pay_date_of(d),
            )
            for d in dividends
        ),
        key=lambda d: d.date,
    )
    bars = dividend_adjusted(agg_bars(aggs), events)
    return History(
        symbol=symbol,
        bars=[bar for bar in bars if start <= bar.date <= end],
        dividends=[d for d in events if start <= d.date <= end],
        splits=[s for s in split_events if start <= s.date <= end],
        currency=currency,
        dividends_complete=dividends_complete,
    )


def history_from_bodies(
    symbol: str, *, aggs: bytes, dividends: bytes, splits: bytes, start: date, end: date
) -> History:
    """`build_history` from raw aggregates, dividends and splits bodies (one page each)."""
    return build_history(
        symbol,
        aggs=decode_body(aggs, _Aggs).results,
        dividends=decode_body(dividends, _Dividends).results,
        splits=decode_body(splits, _Splits).results,
        start=start,
        end=end,
    )


class PolygonProvider:
    """The Polygon adapter; the key travels in the Authorization header, never in URLs."""

    name = NAME

    def __init__(self, *, transport: Transport, base_url: str, api_key: str, clock: Clock) -> None:
        self._transport = transport
        self._clock = clock
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}

    async def _get(self, url: str, params: dict[str, str | int] | None = None) -> Reply:
        return await self._transport.get(url, params=params, headers=self._headers)

    async def history(self, symbol: str, *, start: date, end: date) -> History:
        """Aggregates from `start` through today, dividends and splits, trimmed to the window."""
        ticker = provider_symbol(NAME, symbol)
        today = exchange_today(self._clock)
        through = max(end, today)
        aggs: list[_Agg] = []
        url: str | None = f"{self._base}/v2/aggs/ticker/{ticker}/range/1/day/{start}/{through}"
        params: dict[str, str | int] | None = {"adjusted": "true", "sort": "asc", "limit": 50000}
        for _ in range(MAX_PAGES):
            if url is None:
                break
            page = _decode(await self._get(url, params), _Aggs)
            if page.status == "ERROR":
                raise ProviderError(ErrorKind.PERMANENT, f"{NAME}: {page.error}", provider=NAME)
            aggs.extend(page.results)
            url, params = page.next_url, None
        if is_pair(symbol):  # a currency has no dividends or splits
            return build_history(
                symbol,
                aggs=aggs,
                dividends=[],
                splits=[],
                start=start,
                end=end,
                currency=pair_currencies(symbol)[1],
            )
        reference: dict[str, str | int] = {"ticker": ticker, "limit": 1000}
        dividends, complete = await self._dividends(
            {**reference, "ex_dividend_date.gte": start.isoformat()}
        )
        splits = _decode(
            await self._get(
                f"{self._base}/v3/reference/splits",
                {**reference, "execution_date.gte": start.isoformat()},
            ),
            _Splits,
        )
        return build_history(
            symbol,
            aggs=aggs,
            dividends=dividends,
            splits=splits.results,
            start=start,
            end=end,
            dividends_complete=complete,
        )

    async def _dividends(self, params: dict[str, str | int]) -> tuple[list[_DividendRow], bool]:
        """Every dividend page (following `next_url`, at most MAX_PAGES), and whether the
        listing was complete."""
        rows: list[_DividendRow] = []
        url: str | None = f"{self._base}/v3/reference/dividends"
        query: dict[str, str | int] | None = params
        for _ in range(MAX_PAGES):
            if url is None:
                return rows, True
            page = _decode(await self._get(url, query), _Dividends)
            rows.extend(page.results)
            url, query = page.next_url, None
        return rows, url is None

    async def quotes(self, symbols: list[str]) -> dict[str, Quote | ProviderError]:
        """Closes from grouped daily: one call covers every US ticker on the latest session."""
        wanted = {provider_symbol(NAME, s): s for s in symbols}
        today = exchange_today(self._clock)
        recent = NYSE.trading_days(today - timedelta(days=2 * GROUPED_LOOKBACK_DAYS), today)
        days = recent[::-1][:GROUPED_LOOKBACK_DAYS]
        found: dict[str, Quote | ProviderError] = {}
        for day in days:
            page = _decode(
                await self._get(
                    f"{self._base}/v2/aggs/grouped/locale/us/market/stocks/{day}",
                    {"adjusted": "true"},
                ),
                _Aggs,
            )
            if not page.results:
                continue
            for agg in page.results:
                if agg.T in wanted:
                    found[wanted[agg.T]] = Quote(
                        symbol=wanted[agg.T],
                        price=agg.c,
                        market_time=datetime.fromtimestamp(agg.t / 1000, tz=UTC),
                        currency="USD",
                    )
            break
        missing = ProviderError(ErrorKind.NOT_FOUND, f"{NAME}: not in grouped daily", provider=NAME)
        return {s: found.get(s, missing) for s in symbols}

    async def asset_info(self, symbol: str) -> AssetInfo:
        """Ticker details from `/v3/reference/tickers/{ticker}`."""
        envelope = _decode(
            await self._get(f"{self._base}/v3/reference/tickers/{provider_symbol(NAME, symbol)}"),
            _TickerEnvelope,
        )
        if envelope.results is None:
            raise ProviderError(ErrorKind.NOT_FOUND, f"{NAME}: unknown ticker", provider=NAME)
        ticker = envelope.results
        return AssetInfo(
            symbol=symbol,
            name=ticker.name,
            exchange=ticker.primary_exchange,
            currency=ticker.currency_name.upper() if ticker.currency_name else None,
            asset_type=ticker.type,
            industry=ticker.sic_description,
            country=ticker.locale.upper() if ticker.locale else None,
            description=ticker.description,
        )
