"""Tiingo: end-of-day prices, ticker metadata and IEX last prices.

Tiingo's `close` is raw (not split-adjusted) and its `adjClose` is split- and
dividend-adjusted. findash's `close` is derived by dividing raw prices by the
ratios of every later split (and multiplying volume by them); `adj_close` is
`adjClose`. Prices are requested through today so every later split is known.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TypeVar

import msgspec

from service.portfolio.fx import is_pair, pair_currencies
from workers.market_data.providers.adjust import split_factor_after
from workers.market_data.providers.base import ErrorKind, ProviderError, decode_payload
from workers.market_data.providers.symbols import provider_symbol
from workers.market_data.providers.transport import Reply, Transport
from workers.market_data.types import AssetInfo, Bar, Dividend, History, Quote, Split

NAME = "tiingo"
QUOTE_BATCH = 100
T = TypeVar("T")


class _Price(msgspec.Struct):
    date: datetime
    close: float
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    adjClose: float | None = None  # noqa: N815 - Tiingo's field names
    divCash: float = 0.0  # noqa: N815
    splitFactor: float = 1.0  # noqa: N815


class _FxPrice(msgspec.Struct):
    date: datetime
    close: float
    open: float | None = None
    high: float | None = None
    low: float | None = None


def fx_history(symbol: str, *, prices: list[_FxPrice], start: date, end: date) -> History:
    """Daily FX closes (Tiingo's FX endpoint) as bars of the pair, quoted in its second
    currency; a pair has no volume, dividends or splits."""
    by_date = {
        p.date.date(): Bar(
            date=p.date.date(),
            open=p.open,
            high=p.high,
            low=p.low,
            close=p.close,
            adj_close=p.close,
            volume=None,
        )
        for p in sorted(prices, key=lambda p: p.date)
        if start <= p.date.date() <= end
    }
    return History(
        symbol=symbol,
        bars=[by_date[d] for d in sorted(by_date)],
        currency=pair_currencies(symbol)[1],
    )


class _Meta(msgspec.Struct):
    ticker: str
    name: str | None = None
    exchangeCode: str | None = None  # noqa: N815
    description: str | None = None


class _Iex(msgspec.Struct):
    ticker: str
    tngoLast: float | None = None  # noqa: N815
    last: float | None = None
    prevClose: float | None = None  # noqa: N815
    timestamp: datetime | None = None


class _Detail(msgspec.Struct):
    detail: str = ""


def _decode(reply: Reply, kind: type[T]) -> T:
    check_status(reply)
    return decode_body(reply.body, kind)


def decode_body(body: bytes, kind: type[T]) -> T:
    """Decode a Tiingo body into `kind`; a body that does not fit is a MALFORMED error."""
    return decode_payload(body, kind, provider=NAME)


def check_status(reply: Reply) -> None:
    """Raise the error a non-200 Tiingo reply means (429/5xx were raised by the transport)."""
    if reply.status == 200:
        return
    try:
        message = msgspec.json.decode(reply.body, type=_Detail).detail or f"HTTP {reply.status}"
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = f"HTTP {reply.status}"
    kind = ErrorKind.NOT_FOUND if reply.status == 404 else ErrorKind.PERMANENT
    raise ProviderError(kind, f"{NAME}: {message}", provider=NAME)


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else round(value / factor, 6)


def build_history(symbol: str, *, prices: list[_Price], start: date, end: date) -> History:
    """Tiingo rows in findash's semantics, trimmed to [start, end]."""
    rows = sorted(prices, key=lambda p: p.date)
    splits = [
        Split(date=p.date.date(), numerator=p.splitFactor, denominator=1.0)
        for p in rows
        if p.splitFactor > 0 and p.splitFactor != 1.0
    ]
    dividends = [Dividend(date=p.date.date(), amount=p.divCash) for p in rows if p.divCash > 0]
    bars: list[Bar] = []
    for p in rows:
        day = p.date.date()
        if not start <= day <= end:
            continue
        factor = split_factor_after(day, splits)
        close = round(p.close / factor, 6)
        bars.append(
            Bar(
                date=day,
                open=_scaled(p.open, factor),
                high=_scaled(p.high, factor),
                low=_scaled(p.low, factor),
                close=close,
                adj_close=close if p.adjClose is None else p.adjClose,
                volume=None if p.volume is None else round(p.volume * factor),
            )
        )
    # A dividend paid before a later split is also expressed per post-split share.
    dividends = [
        Dividend(date=d.date, amount=round(d.amount / split_factor_after(d.date, splits), 8))
        for d in dividends
    ]
    return History(
        symbol=symbol,
        bars=bars,
        dividends=[d for d in dividends if start <= d.date <= end],
        splits=[s for s in splits if start <= s.date <= end],
        currency="USD",
    )


def history_from_body(symbol: str, body: bytes, *, start: date, end: date) -> History:
    """`build_history` from a raw daily prices body."""
    return build_history(symbol, prices=decode_body(body, list[_Price]), start=start, end=end)


class TiingoProvider:
    """The Tiingo adapter; the token travels in the Authorization header, never in URLs."""

    name = NAME

    def __init__(self, *, transport: Transport, base_url: str, api_key: str) -> None:
        self._transport = transport
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Token {api_key}"}

    async def history(self, symbol: str, *, start: date, end: date) -> History:
        """Daily prices from `start` through today, converted and trimmed to the window; an FX
        pair from the FX endpoint."""
        if is_pair(symbol):
            reply = await self._transport.get(
                f"{self._base}/tiingo/fx/{provider_symbol(NAME, symbol)}/prices",
                params={
                    "startDate": start.isoformat(),
                    "endDate": end.isoformat(),
                    "resampleFreq": "1day",
                },
                headers=self._headers,
            )
            return fx_history(symbol, prices=_decode(reply, list[_FxPrice]), start=start, end=end)
        reply = await self._transport.get(
            f"{self._base}/tiingo/daily/{provider_symbol(NAME, symbol)}/prices",
            params={"startDate": start.isoformat()},
            headers=self._headers,
        )
        prices = _decode(reply, list[_Price])
        return build_history(symbol, prices=prices, start=start, end=end)

    async def quotes(self, symbols: list[str]) -> dict[str, Quote | ProviderError]:
        """IEX last prices, up to 100 tickers per request."""
        wanted = {provider_symbol(NAME, s).lower(): s for s in symbols}
        out: dict[str, Quote | ProviderError] = {}
        names = list(wanted)
        for i in range(0, len(names), QUOTE_BATCH):
            reply = await self._transport.get(
                f"{self._base}/iex/",
                params={"tickers": ",".join(names[i : i + QUOTE_BATCH])},
                headers=self._headers,
            )
            for row in _decode(reply, list[_Iex]):
                symbol = wanted.get(row.ticker.lower())
                price = row.tngoLast or row.last or row.prevClose
                if symbol is not None and price is not None:
                    out[symbol] = Quote(
                        symbol=symbol,
                        price=price,
                        market_time=row.timestamp.astimezone(UTC) if row.timestamp else None,
                        currency="USD",
                    )
        missing = ProviderError(ErrorKind.NOT_FOUND, f"{NAME}: no IEX price", provider=NAME)
        return {s: out.get(s, missing) for s in symbols}

    async def asset_info(self, symbol: str) -> AssetInfo:
        """Ticker metadata from `/tiingo/daily/{ticker}`."""
        reply = await self._transport.get(
            f"{self._base}/tiingo/daily/{provider_symbol(NAME, symbol)}", headers=self._headers
        )
        meta = _decode(reply, _Meta)
        return AssetInfo(
            symbol=symbol,
            name=meta.name,
            exchange=meta.exchangeCode,
            currency="USD",
            description=meta.description,
        )
