"""An offline stand-in for Yahoo's v8 chart API: deterministic, realistic daily bars.

Every symbol gets its own seeded random walk over NYSE trading days since
2000, so any date range for a symbol always returns the same bars. Some
symbols pay quarterly dividends and some split once; `close` is
split-adjusted and `adjclose` also dividend-adjusted, as Yahoo serves them.
Symbols starting with `ZZ` are unknown (HTTP 404 in Yahoo's error shape).

Latency and faults (429 with Retry-After, 500, malformed bodies, slow
responses, `{"chart": null}`, an empty result, the live duplicate bar) are
configured at start or at run time through `PUT /_sim/config`; `GET
/_sim/stats` reports what was served, so tests can check what was stored.
"""

from __future__ import annotations

import asyncio
import random
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

import click
import msgspec
import numpy as np
from aiohttp import web

from service.logs import configure_logging, get_logger
from service.settings import Settings
from service.trading_calendar import EXCHANGE_TZ, NYSE, REGULAR_OPEN

log = get_logger(__name__)

EPOCH = date(2000, 1, 3)
UNKNOWN_PREFIX = "ZZ"
Fault = Literal["429", "500", "malformed", "slow", "chart_null", "empty_result"]
_RANGES = {
    "1d": 1,
    "5d": 7,
    "1mo": 31,
    "3mo": 92,
    "6mo": 183,
    "1y": 365,
    "2y": 730,
    "5y": 1826,
    "10y": 3652,
    "ytd": -1,
    "max": -2,
}


class ExchangeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How the exchange behaves: latency, and which faults it injects how often."""

    latency_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    jitter_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    fault_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    faults: list[Fault] = msgspec.field(default_factory=list)
    retry_after_seconds: Annotated[int, msgspec.Meta(ge=0)] = 1
    slow_ms: Annotated[int, msgspec.Meta(ge=0)] = 5000
    live_bar: bool = False
    today: date | None = None
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Series:
    """One symbol's full daily history since EPOCH."""

    days: tuple[date, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    adjclose: np.ndarray
    volume: np.ndarray
    dividends: dict[date, float]
    splits: dict[date, tuple[int, int]]


def symbol_seed(symbol: str) -> int:
    """A stable per-symbol seed (crc32 does not vary between processes, unlike hash())."""
    return zlib.crc32(symbol.encode())


@lru_cache(maxsize=64)
def _trading_days(end: date) -> tuple[date, ...]:
    return tuple(NYSE.iter_trading_days(EPOCH, end))


@lru_cache(maxsize=8192)
def build_series(symbol: str, end: date) -> Series:
    """Deterministic bars for `symbol` from EPOCH to `end` (a prefix never changes)."""
    days = _trading_days(end)
    seed = symbol_seed(symbol)
    rng = np.random.default_rng(seed)
    n = len(days)
    sigma = 0.01 + (seed % 200) / 10_000
    drift = 0.0002 + ((seed >> 8) % 7) / 20_000
    returns = drift + sigma * rng.standard_normal(n)
    start_price = 10.0 + seed % 490
    close = start_price * np.exp(np.cumsum(returns) - returns[0])
    gap = np.exp(0.3 * sigma * rng.standard_normal(n))
    open_ = np.concatenate(([close[0]], close[:-1])) * gap
    wick = np.abs(rng.standard_normal((2, n))) * sigma * 0.5
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    volume = (1_000_000 * (1 + seed % 50) * np.exp(0.3 * rng.standard_normal(n))).astype(np.int64)

    dividends: dict[date, float] = {}
    if seed % 3 == 0:
        for i in range(1, n):
            if days[i].month in (2, 5, 8, 11) and days[i - 1].month != days[i].month:
                dividends[days[i]] = round(float(close[i - 1]) * 0.004, 4)
    splits: dict[date, tuple[int, int]] = {}
    if seed % 11 == 0 and n > 1000:
        splits[days[n // 2 + seed % (n // 3)]] = (2, 1)

    # adjclose: multiply each close by the product of (1 - d / prev close) over later ex-dates.
    factor = np.ones(n)
    index = {day: i for i, day in enumerate(days)}
    for ex_date, amount in dividends.items():
        i = index[ex_date]
        factor[:i] *= 1 - amount / float(close[i - 1])
    return Series(days, open_, high, low, close, close * factor, volume, dividends, splits)


def _epoch_seconds(day: date) -> int:
    """The session start of `day` (09:30 New York) in unix seconds, as Yahoo stamps bars."""
    return int(datetime.combine(day, REGULAR_OPEN, tzinfo=EXCHANGE_TZ).timestamp())


def _window(query: dict[str, str], today: date) -> tuple[date, date]:
    if "period1" in query:
        start = datetime.fromtimestamp(int(query["period1"]), tz=UTC).date()
        end = (
            datetime.fromtimestamp(int(query["period2"]), tz=UTC).date()
            if "period2" in query
            else today
        )
        return max(start, EPOCH), min(end, today)
    span = _RANGES.get(query.get("range", "1mo"))
    if span is None:
        raise ValueError(f"Invalid input - range={query.get('range')}")
    if span == -2:
        return EPOCH, today
    if span == -1:
        return date(today.year, 1, 1), today
    return today - timedelta(days=span), today


def chart_payload(symbol: str, start: date, end: date, *, live_bar: bool) -> dict[str, object]:
    """The Yahoo v8 chart body for `symbol` over [start, end] (a pure function of its inputs)."""
    series = build_series(symbol, end)
    lo = next((i for i, d in enumerate(series.days) if d >= start), len(series.days))
    days = series.days[lo:]
    stamps = [_epoch_seconds(day) for day in days]

    def col(values: np.ndarray) -> list[float]:
        return [round(float(v), 4) for v in values[lo:]]

    quote: dict[str, list[Any]] = {
        "open": col(series.open),
        "high": col(series.high),
        "low": col(series.low),
        "close": col(series.close),
        "volume": [int(v) for v in series.volume[lo:]],
    }
    adjclose = col(series.adjclose)
    last_close = quote["close"][-1] if days else None
    market_time = stamps[-1] + 6 * 3600 + 1800 if stamps else None
    if live_bar and days:
        stamps.append(market_time or 0)
        for key in quote:
            quote[key].append(quote[key][-1])
        adjclose.append(adjclose[-1])
    utc_offset = datetime.combine(end, REGULAR_OPEN, tzinfo=EXCHANGE_TZ).utcoffset()
    offset = int(utc_offset.total_seconds()) if utc_offset else 0
    events: dict[str, dict[str, dict[str, object]]] = {}
    dividends = {d: a for d, a in series.dividends.items() if start <= d <= end}
    splits = {d: r for d, r in series.splits.items() if start <= d <= end}
    if dividends:
        events["dividends"] = {
            str(_epoch_seconds(d)): {"amount": a, "date": _epoch_seconds(d)}
            for d, a in dividends.items()
        }
    if splits:
        events["splits"] = {
            str(_epoch_seconds(d)): {
                "date": _epoch_seconds(d),
                "numerator": num,
                "denominator": den,
                "splitRatio": f"{num}:{den}",
            }
            for d, (num, den) in splits.items()
        }
    result: dict[str, object] = {
        "meta": {
            "currency": "USD",
            "symbol": symbol,
            "exchangeName": "NMS",
            "fullExchangeName": "NasdaqGS",
            "instrumentType": "INDEX" if symbol.startswith("^") else "EQUITY",
            "exchangeTimezoneName": "America/New_York",
            "timezone": "EST",
            "gmtoffset": offset,
            "regularMarketPrice": last_close,
            "regularMarketTime": market_time,
            "priceHint": 2,
            "dataGranularity": "1d",
        },
        "timestamp": stamps,
        "indicators": {"quote": [quote], "adjclose": [{"adjclose": adjclose}]},
    }
    if events:
        result["events"] = events
    return {"chart": {"result": [result], "error": None}}


class SimulatedExchange:
    """The aiohttp application and its mutable config and counters."""

    def __init__(self, config: ExchangeConfig | None = None) -> None:
        self.config = config or ExchangeConfig()
        self.requests: Counter[str] = Counter()
        self.bars_served: Counter[str] = Counter()
        self._rng = random.Random(self.config.seed)

    def today(self) -> date:
        """The exchange's notion of today (fixed by config in tests)."""
        return self.config.today or datetime.now(EXCHANGE_TZ).date()

    def app(self) -> web.Application:
        """Build the aiohttp application serving chart and control routes."""
        app = web.Application()
        app.router.add_get("/v8/finance/chart/{symbol}", self.chart)
        app.router.add_get("/_sim/config", self.get_config)
        app.router.add_put("/_sim/config", self.put_config)
        app.router.add_get("/_sim/stats", self.stats)
        app.router.add_post("/_sim/reset", self.reset)
        app.router.add_get("/health", self.health)
        return app

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_config(self, _: web.Request) -> web.Response:
        return web.Response(body=msgspec.json.encode(self.config), content_type="application/json")

    async def put_config(self, request: web.Request) -> web.Response:
        try:
            self.config = msgspec.json.decode(await request.read(), type=ExchangeConfig)
        except msgspec.ValidationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self._rng = random.Random(self.config.seed)
        return await self.get_config(request)

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"requests": dict(self.requests), "bars_served": dict(self.bars_served)}
        )

    async def reset(self, _: web.Request) -> web.Response:
        self.requests.clear()
        self.bars_served.clear()
        return web.json_response({"status": "reset"})

    async def _pick_fault(self) -> Fault | None:
        config = self.config
        if config.faults and self._rng.random() < config.fault_rate:
            return self._rng.choice(config.faults)
        return None

    async def chart(self, request: web.Request) -> web.Response:
        symbol = request.match_info["symbol"].upper()
        config = self.config
        delay = config.latency_ms + (
            self._rng.randint(0, config.jitter_ms) if config.jitter_ms else 0
        )
        fault = await self._pick_fault()
        if fault == "slow":
            delay += config.slow_ms
        if delay:
            await asyncio.sleep(delay / 1000)
        self.requests["total"] += 1
        if fault == "429":
            self.requests["429"] += 1
            return web.Response(
                status=429,
                text="Too Many Requests",
                headers={"Retry-After": str(config.retry_after_seconds)},
            )
        if fault == "500":
            self.requests["500"] += 1
            return web.Response(
                status=500, text="<html>Will be right back...</html>", content_type="text/html"
            )
        if fault == "malformed":
            self.requests["malformed"] += 1
            return web.Response(
                status=200, text='{"chart": {"result": [{"meta": ', content_type="application/json"
            )
        if fault == "chart_null":
            return web.json_response({"chart": None})
        if symbol.startswith(UNKNOWN_PREFIX) or fault == "empty_result":
            self.requests["404"] += 1
            if fault == "empty_result":
                return web.json_response({"chart": {"result": [], "error": None}})
            return web.json_response(
                {
                    "chart": {
                        "result": None,
                        "error": {
                            "code": "Not Found",
                            "description": "No data found, symbol may be delisted",
                        },
                    }
                },
                status=404,
            )
        try:
            start, end = _window(dict(request.query), self.today())
        except ValueError as exc:
            return web.json_response(
                {
                    "chart": {
                        "result": None,
                        "error": {"code": "Bad Request", "description": str(exc)},
                    }
                },
                status=400,
            )
        payload = chart_payload(symbol, start, end, live_bar=config.live_bar)
        bars = len(payload["chart"]["result"][0]["timestamp"])  # type: ignore[index]
        self.bars_served[symbol] += bars - (1 if config.live_bar and bars else 0)
        self.requests["200"] += 1
        return web.Response(body=msgspec.json.encode(payload), content_type="application/json")


@click.command()
@click.option("--host", default=None, help="Interface to bind (default SIM_EXCHANGE_HOST).")
@click.option("--port", type=int, default=None, help="Port (default SIM_EXCHANGE_PORT).")
@click.option("--latency-ms", type=int, default=None, help="Added latency per request.")
def main(host: str | None, port: int | None, latency_ms: int | None) -> None:
    """Serve the simulated exchange until interrupted."""
    settings = Settings.from_env()
    configure_logging(service="exchange", level=settings.log_level, fmt=settings.log_format)
    config = ExchangeConfig(
        latency_ms=settings.sim_exchange_latency_ms if latency_ms is None else latency_ms
    )
    exchange = SimulatedExchange(config)
    bind_host = host or settings.sim_exchange_host
    bind_port = settings.sim_exchange_port if port is None else port
    log.info(
        "simulated exchange listening", host=bind_host, port=bind_port, latency_ms=config.latency_ms
    )
    web.run_app(
        exchange.app(),
        host=bind_host,
        port=bind_port,
        print=None,
        access_log=None,
        handle_signals=True,
    )


if __name__ == "__main__":
    main()
