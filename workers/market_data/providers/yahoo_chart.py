"""Decode Yahoo's v8 chart payload into daily bars, dividends and splits (pure).

Handles what the real API does: nulls in the arrays (a missing bar, never a
zero), a live last bar on the same exchange date as the previous one, the
three spellings of "no such symbol", and bodies that are not the expected
JSON at all. Every failure is a `ChartError` with a kind the caller can act on.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from workers.market_data.types import Bar, Dividend, Split

T = TypeVar("T")


class ChartErrorKind(StrEnum):
    """Why a chart payload yielded no bars."""

    UNKNOWN_SYMBOL = "unknown_symbol"
    MALFORMED = "malformed"
    INVALID_REQUEST = "invalid_request"
    TRANSIENT = "transient"


class ChartError(Exception):
    """A chart payload that could not be turned into bars, classified by `kind`."""

    def __init__(self, kind: ChartErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @classmethod
    def transient(cls, message: str) -> ChartError:
        """A failure worth retrying later (rate limit, server error)."""
        return cls(ChartErrorKind.TRANSIENT, message)


class _Quote(msgspec.Struct):
    open: list[float | None] = []
    high: list[float | None] = []
    low: list[float | None] = []
    close: list[float | None] = []
    volume: list[int | float | None] = []


class _AdjClose(msgspec.Struct):
    adjclose: list[float | None] = []


class _Indicators(msgspec.Struct):
    quote: list[_Quote] = []
    adjclose: list[_AdjClose] = []


class _Dividend(msgspec.Struct):
    amount: float
    date: int


class _Split(msgspec.Struct):
    date: int
    numerator: float
    denominator: float


class _Events(msgspec.Struct):
    dividends: dict[str, _Dividend] = {}
    splits: dict[str, _Split] = {}


class _Meta(msgspec.Struct):
    symbol: str = ""
    currency: str | None = None
    exchangeName: str | None = None  # noqa: N815 - Yahoo's field name
    instrumentType: str | None = None  # noqa: N815
    exchangeTimezoneName: str = "America/New_York"  # noqa: N815
    regularMarketPrice: float | None = None  # noqa: N815
    regularMarketTime: int | None = None  # noqa: N815


class _Result(msgspec.Struct):
    meta: _Meta
    timestamp: list[int] = []
    indicators: _Indicators = msgspec.field(default_factory=_Indicators)
    events: _Events = msgspec.field(default_factory=_Events)


class _Error(msgspec.Struct):
    code: str = ""
    description: str = ""


class _Chart(msgspec.Struct):
    result: list[_Result] | None = None
    error: _Error | None = None


class _Envelope(msgspec.Struct):
    chart: _Chart | None = None


class Chart(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one chart response says about one symbol."""

    symbol: str
    currency: str | None
    exchange: str | None
    instrument_type: str | None
    market_price: float | None
    market_time: datetime | None
    bars: list[Bar]
    dividends: list[Dividend]
    splits: list[Split]


_DECODER = msgspec.json.Decoder(_Envelope)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("America/New_York")


def _padded(values: list[T], length: int) -> list[T | None]:
    """`values` extended with None to `length` (Yahoo's arrays can be shorter)."""
    missing = length - len(values)
    return [*values, *([None] * missing)] if missing > 0 else list(values)


def parse_chart(body: bytes, *, status: int = 200) -> Chart:
    """Decode a chart response body; raise `ChartError` for missing symbols or bad payloads."""
    try:
        envelope = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ChartError(ChartErrorKind.MALFORMED, f"malformed chart payload: {exc}") from None
    chart = envelope.chart
    if chart is None:
        raise ChartError(ChartErrorKind.UNKNOWN_SYMBOL, "no data: chart is null")
    if chart.error is not None:
        kind = (
            ChartErrorKind.UNKNOWN_SYMBOL
            if status == 404 or chart.error.code == "Not Found"
            else ChartErrorKind.INVALID_REQUEST
        )
        raise ChartError(kind, f"{chart.error.code}: {chart.error.description}".strip(": "))
    if not chart.result:
        raise ChartError(ChartErrorKind.UNKNOWN_SYMBOL, "no data: empty chart result")
    return _build_chart(chart.result[0])


def _build_chart(result: _Result) -> Chart:
    zone = _zone(result.meta.exchangeTimezoneName)
    quote = result.indicators.quote[0] if result.indicators.quote else _Quote()
    adjclose = result.indicators.adjclose[0].adjclose if result.indicators.adjclose else []
    by_date: dict[date, Bar] = {}
    stamps = result.timestamp
    columns = zip(
        stamps,
        _padded(quote.open, len(stamps)),
        _padded(quote.high, len(stamps)),
        _padded(quote.low, len(stamps)),
        _padded(quote.close, len(stamps)),
        _padded(adjclose, len(stamps)),
        _padded(quote.volume, len(stamps)),
        strict=False,
    )
    for stamp, open_, high, low, close, adj, volume in columns:
        if close is None:
            continue
        day = datetime.fromtimestamp(stamp, tz=zone).date()
        # A later element on the same exchange date is the live bar: it wins.
        by_date[day] = Bar(
            date=day,
            open=open_,
            high=high,
            low=low,
            close=close,
            adj_close=close if adj is None else adj,
            volume=None if volume is None else int(volume),
        )
    dividends = sorted(
        (
            Dividend(date=datetime.fromtimestamp(d.date, tz=zone).date(), amount=d.amount)
            for d in result.events.dividends.values()
        ),
        key=lambda d: d.date,
    )
    splits = sorted(
        (
            Split(
                date=datetime.fromtimestamp(s.date, tz=zone).date(),
                numerator=s.numerator,
                denominator=s.denominator,
            )
            for s in result.events.splits.values()
            if s.numerator > 0 and s.denominator > 0
        ),
        key=lambda s: s.date,
    )
    meta = result.meta
    return Chart(
        symbol=meta.symbol,
        currency=meta.currency,
        exchange=meta.exchangeName,
        instrument_type=meta.instrumentType,
        market_price=meta.regularMarketPrice,
        market_time=(
            datetime.fromtimestamp(meta.regularMarketTime, tz=UTC)
            if meta.regularMarketTime is not None
            else None
        ),
        bars=[by_date[day] for day in sorted(by_date)],
        dividends=dividends,
        splits=splits,
    )
