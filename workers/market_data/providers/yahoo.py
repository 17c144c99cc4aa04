"""Yahoo Finance: history and quotes from the v8 chart; asset info from quoteSummary.

The chart needs no credentials. quoteSummary needs a session cookie (from the
cookie host) and a crumb (from getcrumb, sent with that cookie); a 401
"Invalid Crumb" drops both and the handshake runs once more. Yahoo's `close`
is already split-adjusted and its `adjclose` split- and dividend-adjusted,
which is exactly findash's semantics.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from http.cookies import SimpleCookie

import msgspec

from workers.market_data.providers.base import ErrorKind, ProviderError
from workers.market_data.providers.symbols import provider_symbol
from workers.market_data.providers.transport import Reply, Transport
from workers.market_data.providers.yahoo_chart import Chart, ChartError, ChartErrorKind, parse_chart
from workers.market_data.types import AssetInfo, History, Quote

NAME = "yahoo"
SUMMARY_MODULES = "price,assetProfile,quoteType"
_CHART_KINDS = {
    ChartErrorKind.UNKNOWN_SYMBOL: ErrorKind.NOT_FOUND,
    ChartErrorKind.MALFORMED: ErrorKind.MALFORMED,
    ChartErrorKind.INVALID_REQUEST: ErrorKind.PERMANENT,
    ChartErrorKind.TRANSIENT: ErrorKind.TRANSIENT,
}


class _Price(msgspec.Struct):
    longName: str | None = None  # noqa: N815 - Yahoo's field names
    shortName: str | None = None  # noqa: N815
    currency: str | None = None
    exchangeName: str | None = None  # noqa: N815
    quoteType: str | None = None  # noqa: N815


class _Profile(msgspec.Struct):
    sector: str | None = None
    industry: str | None = None
    country: str | None = None
    longBusinessSummary: str | None = None  # noqa: N815


class _SummaryResult(msgspec.Struct):
    price: _Price = msgspec.field(default_factory=_Price)
    assetProfile: _Profile = msgspec.field(default_factory=_Profile)  # noqa: N815


class _SummaryError(msgspec.Struct):
    code: str = ""
    description: str = ""


class _Summary(msgspec.Struct):
    result: list[_SummaryResult] | None = None
    error: _SummaryError | None = None


class _SummaryEnvelope(msgspec.Struct):
    quoteSummary: _Summary | None = None  # noqa: N815


class _FinanceEnvelope(msgspec.Struct):
    finance: _Summary | None = None


_SUMMARY = msgspec.json.Decoder(_SummaryEnvelope)
_FINANCE = msgspec.json.Decoder(_FinanceEnvelope)


def chart_history(chart: Chart, *, symbol: str, start: date, end: date) -> History:
    """The part of a decoded chart inside [start, end], under the canonical symbol."""
    return History(
        symbol=symbol,
        bars=[bar for bar in chart.bars if start <= bar.date <= end],
        dividends=[d for d in chart.dividends if start <= d.date <= end],
        splits=[s for s in chart.splits if start <= s.date <= end],
        currency=chart.currency,
    )


def decode_chart(reply: Reply) -> Chart:
    """A chart reply decoded, with chart failures classified as provider errors."""
    try:
        return parse_chart(reply.body, status=reply.status)
    except ChartError as exc:
        raise ProviderError(_CHART_KINDS[exc.kind], f"{NAME}: {exc}", provider=NAME) from None


def parse_summary(body: bytes, *, status: int, symbol: str) -> AssetInfo:
    """Decode a quoteSummary body into asset info; 401 means the crumb must be refreshed."""
    if status == 401:
        raise ProviderError(ErrorKind.PERMANENT, f"{NAME}: invalid crumb", provider=NAME)
    try:
        envelope = _SUMMARY.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProviderError(
            ErrorKind.MALFORMED, f"{NAME}: malformed quoteSummary: {exc}", provider=NAME
        ) from None
    summary = envelope.quoteSummary
    if summary is None or summary.error is not None or not summary.result:
        description = summary.error.description if summary and summary.error else "no result"
        kind = ErrorKind.NOT_FOUND if status in (200, 404) else ErrorKind.PERMANENT
        raise ProviderError(kind, f"{NAME}: {description}", provider=NAME)
    result = summary.result[0]
    price, profile = result.price, result.assetProfile
    return AssetInfo(
        symbol=symbol,
        name=price.longName or price.shortName,
        exchange=price.exchangeName,
        currency=price.currency,
        asset_type=price.quoteType,
        sector=profile.sector,
        industry=profile.industry,
        country=profile.country,
        description=profile.longBusinessSummary,
    )


def _is_invalid_crumb(reply: Reply) -> bool:
    if reply.status != 401:
        return False
    try:
        envelope = _FINANCE.decode(reply.body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return True
    error = envelope.finance.error if envelope.finance else None
    return error is None or "crumb" in error.description.lower() or error.code == "Unauthorized"


class YahooProvider:
    """The Yahoo adapter; one per worker process, so its crumb is reused across tasks."""

    name = NAME

    def __init__(
        self,
        *,
        transport: Transport,
        chart_url: str,
        quote_url: str,
        cookie_url: str,
        crumb_url: str,
    ) -> None:
        self._transport = transport
        self._chart_url = chart_url.rstrip("/")
        self._quote_url = quote_url.rstrip("/")
        self._cookie_url = cookie_url
        self._crumb_url = crumb_url
        self._credentials: tuple[str, str] | None = None
        self._handshake = asyncio.Lock()

    async def history(self, symbol: str, *, start: date, end: date) -> History:
        """Bars, dividends and splits from the chart for [start, end]."""
        period1 = int(datetime.combine(start, time(), tzinfo=UTC).timestamp())
        period2 = int(datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC).timestamp())
        reply = await self._transport.get(
            f"{self._chart_url}/v8/finance/chart/{provider_symbol(NAME, symbol)}",
            params={
                "period1": period1,
                "period2": period2,
                "interval": "1d",
                "events": "div,splits",
            },
        )
        return chart_history(decode_chart(reply), symbol=symbol, start=start, end=end)

    async def quotes(self, symbols: list[str]) -> dict[str, Quote | ProviderError]:
        """Each symbol's `regularMarketPrice` from its chart meta (no crumb needed)."""
        answers = await asyncio.gather(
            *(self._quote(symbol) for symbol in symbols), return_exceptions=True
        )
        out: dict[str, Quote | ProviderError] = {}
        for symbol, answer in zip(symbols, answers, strict=True):
            if isinstance(answer, Quote | ProviderError):
                out[symbol] = answer
            elif isinstance(answer, BaseException):
                raise answer
        return out

    async def _quote(self, symbol: str) -> Quote:
        reply = await self._transport.get(
            f"{self._chart_url}/v8/finance/chart/{provider_symbol(NAME, symbol)}",
            params={"range": "5d", "interval": "1d"},
        )
        chart = decode_chart(reply)
        if chart.market_price is None:
            if not chart.bars:
                raise ProviderError(ErrorKind.NOT_FOUND, f"{NAME}: no price", provider=NAME)
            last = chart.bars[-1]
            return Quote(symbol=symbol, price=last.close, market_time=None, currency=chart.currency)
        return Quote(
            symbol=symbol,
            price=chart.market_price,
            market_time=chart.market_time,
            currency=chart.currency,
        )

    async def asset_info(self, symbol: str) -> AssetInfo:
        """quoteSummary's price and profile modules, refreshing the crumb once if rejected."""
        for attempt in range(2):
            cookie, crumb = await self._credentials_for(refresh=attempt > 0)
            reply = await self._transport.get(
                f"{self._quote_url}/v10/finance/quoteSummary/{provider_symbol(NAME, symbol)}",
                params={"modules": SUMMARY_MODULES, "crumb": crumb},
                headers={"Cookie": cookie},
            )
            if _is_invalid_crumb(reply) and attempt == 0:
                continue
            return parse_summary(reply.body, status=reply.status, symbol=symbol)
        raise ProviderError(ErrorKind.PERMANENT, f"{NAME}: crumb rejected twice", provider=NAME)

    async def _credentials_for(self, *, refresh: bool) -> tuple[str, str]:
        stale = self._credentials
        async with self._handshake:
            if self._credentials is not None and not (refresh and self._credentials is stale):
                return self._credentials
            self._credentials = await self._handshake_once()
            return self._credentials

    async def _handshake_once(self) -> tuple[str, str]:
        cookie_reply = await self._transport.get(self._cookie_url)
        jar: SimpleCookie = SimpleCookie()
        for header in cookie_reply.headers.getall("Set-Cookie", []):
            jar.load(header)
        cookie = "; ".join(f"{key}={morsel.value}" for key, morsel in jar.items())
        if not cookie:
            raise ProviderError(ErrorKind.TRANSIENT, f"{NAME}: no session cookie", provider=NAME)
        crumb_reply = await self._transport.get(self._crumb_url, headers={"Cookie": cookie})
        crumb = crumb_reply.body.decode(errors="replace").strip()
        if crumb_reply.status != 200 or not crumb or "<" in crumb or " " in crumb:
            raise ProviderError(
                ErrorKind.TRANSIENT,
                f"{NAME}: no crumb (HTTP {crumb_reply.status})",
                provider=NAME,
            )
        return cookie, crumb
