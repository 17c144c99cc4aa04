"""The simulated exchange's aiohttp application: Yahoo-, Polygon- and Tiingo-shaped routes
over one deterministic series per symbol, with latency and fault injection.

Faults (429 with Retry-After, 500, malformed bodies, slow responses, and on
the chart `{"chart": null}` and an empty result), latency and withdrawn dividends are
configured at start or at run time through `PUT /_sim/config`; `GET /_sim/stats` reports
what was served and `POST /_sim/ledger` (a JSON list of symbols) every bar served, so tests
can check what was stored. Yahoo's quoteSummary
wants the cookie from `/_fc` and a crumb from `/v1/test/getcrumb`;
`POST /_sim/rotate_crumb` invalidates issued crumbs. Polygon and Tiingo
routes want any non-empty key (header or query parameter).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from http.cookies import SimpleCookie
from typing import Annotated, Literal

import msgspec
from aiohttp import web

from service.core.clock import Clock, wall_clock
from service.core.trading_calendar import EXCHANGE_TZ, NYSE, TradingCalendar
from workers.market_data.simulated_exchange import polygon, tiingo, yahoo
from workers.market_data.simulated_exchange.series import EPOCH, LastTrade, is_unknown, last_trade

Fault = Literal["429", "500", "malformed", "slow", "chart_null", "empty_result"]
Handler = Callable[[web.Request], Awaitable[web.Response]]
DataHandler = Callable[[web.Request, "Fault | None"], Awaitable[web.Response]]
DEFAULT_UNIVERSE = ("AAPL", "MSFT", "AMZN", "GOOGL", "META", "NVDA", "BRK.B", "JPM", "V", "SPY")


class ExchangeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How the exchange behaves: latency, and which faults it injects how often."""

    latency_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    jitter_ms: Annotated[int, msgspec.Meta(ge=0)] = 0
    fault_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.0
    # Stop injecting after this many faults under this config (0 = no limit).
    fault_limit: Annotated[int, msgspec.Meta(ge=0)] = 0
    faults: list[Fault] = msgspec.field(default_factory=list)
    # Per-fault rates, drawn once per request: {"500": 0.05, "429": 0.05} injects a 500 on
    # 5 % of requests and a 429 on another 5 %. Used instead of `faults`/`fault_rate` when set.
    fault_mix: dict[Fault, Annotated[float, msgspec.Meta(ge=0, le=1)]] = msgspec.field(
        default_factory=dict
    )
    fault_symbols: list[str] = msgspec.field(default_factory=list)
    fault_providers: list[Literal["yahoo", "polygon", "tiingo"]] = msgspec.field(
        default_factory=list
    )
    retry_after_seconds: Annotated[int, msgspec.Meta(ge=0)] = 1
    slow_ms: Annotated[int, msgspec.Meta(ge=0)] = 5000
    live_bar: bool = False
    # Yahoo chart: every k-th bar's prices are null (no trade that day); 0 = none.
    null_every: Annotated[int, msgspec.Meta(ge=0)] = 0
    today: date | None = None
    # Calendar overrides, as in `market_closures`: days without a session, and days that
    # close early (local time). Bars, sessions and quotes follow them.
    closures: list[date] = msgspec.field(default_factory=list)
    early_closes: dict[date, dt_time] = msgspec.field(default_factory=dict)
    # Dividends no provider reports any more, as ex-dates per symbol: every route leaves them
    # out (prices stay as they were), as after a provider withdraws a wrongly announced one.
    withdrawn_dividends: dict[str, list[date]] = msgspec.field(default_factory=dict)
    seed: int = 0
    polygon_page_size: Annotated[int, msgspec.Meta(ge=1)] = 50_000
    # A provider-side limit (0 = none): a token bucket of this rate and `rate_burst` tokens;
    # requests beyond it get 429 with Retry-After, as a real provider's would.
    rate_limit_per_second: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    rate_burst: Annotated[int, msgspec.Meta(ge=1)] = 2
    universe: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_UNIVERSE))

    def __post_init__(self) -> None:
        if sum(self.fault_mix.values()) > 1:
            raise ValueError("fault_mix rates must sum to at most 1")


def _json(payload: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(payload), status=status, content_type="application/json"
    )


def _iso(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


class SimulatedExchange:
    """The aiohttp application and its mutable config and counters."""

    def __init__(self, config: ExchangeConfig | None = None, *, clock: Clock = wall_clock) -> None:
        self.config = config or ExchangeConfig()
        self.clock = clock
        self.requests: Counter[str] = Counter()
        self.bars_served: Counter[str] = Counter()
        # Every daily bar the Yahoo chart served: symbol -> ISO date -> close (the last
        # answer wins, as a re-fetch overwrites a stored bar).
        self.ledger: dict[str, dict[str, float]] = {}
        self._rng = random.Random(self.config.seed)
        self._crumbs: dict[str, str] = {}
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._faults_counted_for: ExchangeConfig | None = None
        self._faults_injected = 0

    def _over_limit(self) -> bool:
        rate = self.config.rate_limit_per_second
        if rate <= 0:
            return False
        now = time.monotonic()
        burst = float(self.config.rate_burst)
        if self._tokens_at == 0.0:
            self._tokens = burst
        else:
            self._tokens = min(burst, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            return True
        self._tokens -= 1
        return False

    @property
    def calendar(self) -> TradingCalendar:
        """The trading calendar with the config's overrides."""
        config = self.config
        if not config.closures and not config.early_closes:
            return NYSE
        return TradingCalendar(closures=config.closures, early_closes=config.early_closes)

    def today(self) -> date:
        """The last day with a complete bar: `config.today` when set, else the last session
        that had closed by the exchange's clock (the settings' clock, so a pinned stack
        agrees). A running session's bar is served only once it closes."""
        return self.config.today or self.calendar.last_completed_session(self.clock())

    def withdrawn(self, symbol: str) -> frozenset[date]:
        """The ex-dates of `symbol`'s dividends the config withdraws."""
        return frozenset(self.config.withdrawn_dividends.get(symbol.upper(), ()))

    def last_trade(self, symbol: str) -> LastTrade:
        """The price a quote shows now: moving with the clock while a session runs, else the
        last close; with `config.today` set, that day's close at its closing instant."""
        calendar = self.calendar
        if self.config.today is not None:
            closed = calendar.close_at(calendar.last_trading_day_on_or_before(self.config.today))
            if closed is not None:
                return last_trade(symbol, closed, calendar)
        return last_trade(symbol, self.clock(), calendar)

    def app(self) -> web.Application:
        """Build the aiohttp application serving every provider's routes and the controls."""
        app = web.Application()
        data_routes: dict[str, tuple[str, DataHandler]] = {
            "/v8/finance/chart/{symbol}": ("yahoo", self.chart),
            "/v10/finance/quoteSummary/{symbol}": ("yahoo", self.quote_summary),
            "/v2/aggs/ticker/{symbol}/range/1/day/{start}/{end}": ("polygon", self.polygon_aggs),
            "/v2/aggs/grouped/locale/us/market/stocks/{day}": ("polygon", self.polygon_grouped),
            "/v3/reference/dividends": ("polygon", self.polygon_dividends),
            "/v3/reference/splits": ("polygon", self.polygon_splits),
            "/v3/reference/tickers/{symbol}": ("polygon", self.polygon_ticker),
            "/tiingo/daily/{symbol}/prices": ("tiingo", self.tiingo_prices),
            "/tiingo/fx/{symbol}/prices": ("tiingo", self.tiingo_fx_prices),
            "/tiingo/daily/{symbol}": ("tiingo", self.tiingo_meta),
            "/iex/": ("tiingo", self.tiingo_iex),
        }
        for path, (provider, handler) in data_routes.items():
            app.router.add_get(path, self._faulty(provider, handler))
        app.router.add_get("/_fc", self.cookie)
        app.router.add_get("/v1/test/getcrumb", self.crumb)
        app.router.add_get("/_sim/config", self.get_config)
        app.router.add_put("/_sim/config", self.put_config)
        app.router.add_get("/_sim/stats", self.stats)
        app.router.add_post("/_sim/ledger", self.ledger_of)
        app.router.add_post("/_sim/reset", self.reset)
        app.router.add_post("/_sim/rotate_crumb", self.rotate_crumb)
        app.router.add_get("/health", self.health)
        return app

    # --- controls -------------------------------------------------------------------------

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def get_config(self, _: web.Request) -> web.Response:
        return _json(self.config)

    async def put_config(self, request: web.Request) -> web.Response:
        try:
            self.config = msgspec.json.decode(await request.read(), type=ExchangeConfig)
        except msgspec.ValidationError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self._rng = random.Random(self.config.seed)
        self._tokens_at = 0.0
        return await self.get_config(request)

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"requests": dict(self.requests), "bars_served": dict(self.bars_served)}
        )

    async def ledger_of(self, request: web.Request) -> web.Response:
        """The served bars of the symbols in the JSON list posted."""
        symbols = msgspec.json.decode(await request.read(), type=list[str])
        return _json({symbol: self.ledger.get(symbol, {}) for symbol in symbols})

    async def reset(self, _: web.Request) -> web.Response:
        self.requests.clear()
        self.bars_served.clear()
        self.ledger.clear()
        return web.json_response({"status": "reset"})

    async def rotate_crumb(self, _: web.Request) -> web.Response:
        self._crumbs.clear()
        return web.json_response({"status": "rotated"})

    # --- latency and faults ---------------------------------------------------------------

    def _pick_fault(self, provider: str, symbol: str) -> Fault | None:
        config = self.config
        if config.fault_symbols and symbol not in config.fault_symbols:
            return None
        if config.fault_providers and provider not in config.fault_providers:
            return None
        if self._faults_counted_for is not config:  # a new config starts a new count
            self._faults_counted_for, self._faults_injected = config, 0
        if config.fault_limit and self._faults_injected >= config.fault_limit:
            return None
        fault = self._draw_fault(config)
        if fault is not None:
            self._faults_injected += 1
        return fault

    def _draw_fault(self, config: ExchangeConfig) -> Fault | None:
        if config.fault_mix:
            draw = self._rng.random()
            for fault, rate in config.fault_mix.items():
                if draw < rate:
                    return fault
                draw -= rate
            return None
        if config.faults and self._rng.random() < config.fault_rate:
            return self._rng.choice(config.faults)
        return None

    def _faulty(self, provider: str, handler: DataHandler) -> Handler:
        async def serve(request: web.Request) -> web.Response:
            config = self.config
            symbol = request.match_info.get("symbol", "").upper()
            delay = config.latency_ms + (
                self._rng.randint(0, config.jitter_ms) if config.jitter_ms else 0
            )
            fault = self._pick_fault(provider, symbol)
            if fault == "slow":
                self.requests["slow"] += 1
                delay += config.slow_ms
            if delay:
                await asyncio.sleep(delay / 1000)
            self.requests["total"] += 1
            self.requests[f"{provider}:total"] += 1
            if self._over_limit():
                fault = "429"
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
                    status=200, text='{"results": [{"c": ', content_type="application/json"
                )
            if provider != "yahoo" and not _has_key(request):
                return _json(polygon.error_payload("ERROR", "API key missing"), status=401)
            return await handler(request, fault)

        return serve

    # --- Yahoo ----------------------------------------------------------------------------

    async def chart(self, request: web.Request, fault: Fault | None) -> web.Response:
        symbol = request.match_info["symbol"].upper()
        if fault == "chart_null":
            return _json({"chart": None})
        if fault == "empty_result":
            self.requests["404"] += 1
            return _json({"chart": {"result": [], "error": None}})
        if is_unknown(symbol):
            self.requests["404"] += 1
            return _json(yahoo.not_found_payload(), status=404)
        try:
            start, end = yahoo.chart_window(dict(request.query), self.today())
        except ValueError as exc:
            error = {"code": "Bad Request", "description": str(exc)}
            return _json({"chart": {"result": None, "error": error}}, status=400)
        payload = yahoo.chart_payload(
            symbol,
            start,
            end,
            live_bar=self.config.live_bar,
            null_every=self.config.null_every,
            trade=self.last_trade(symbol),
            calendar=self.calendar,
            withdrawn=self.withdrawn(symbol),
        )
        closes = payload["chart"]["result"][0]["indicators"]["quote"][0]["close"]  # type: ignore[index]
        bars = sum(1 for close in closes if close is not None)
        self.bars_served[symbol] += bars - (1 if self.config.live_bar and bars else 0)
        self._record(symbol, payload)
        self.requests["200"] += 1
        return _json(payload)

    def _record(self, symbol: str, payload: dict[str, object]) -> None:
        result = payload["chart"]["result"][0]  # type: ignore[index]
        stamps, closes = result["timestamp"], result["indicators"]["quote"][0]["close"]
        if self.config.live_bar and stamps:
            stamps, closes = stamps[:-1], closes[:-1]
        served = self.ledger.setdefault(symbol, {})
        for stamp, close in zip(stamps, closes, strict=True):
            if close is not None:
                served[datetime.fromtimestamp(stamp, tz=EXCHANGE_TZ).date().isoformat()] = close

    async def cookie(self, _: web.Request) -> web.Response:
        # fc.yahoo.com answers 404 but sets the session cookie.
        response = web.Response(status=404, text="Not Found")
        response.set_cookie("A3", f"sim{secrets.token_hex(8)}", httponly=True, path="/")
        return response

    async def crumb(self, request: web.Request) -> web.Response:
        cookie = _cookie(request)
        if cookie is None:
            return web.Response(status=401, text="Unauthorized")
        crumb = secrets.token_urlsafe(8).replace("-", "x")
        self._crumbs[cookie] = crumb
        self.requests["crumb"] += 1
        return web.Response(text=crumb, content_type="text/plain")

    async def quote_summary(self, request: web.Request, fault: Fault | None) -> web.Response:
        symbol = request.match_info["symbol"].upper()
        cookie = _cookie(request)
        if cookie is None or self._crumbs.get(cookie) != request.query.get("crumb"):
            self.requests["401"] += 1
            return _json(yahoo.INVALID_CRUMB, status=401)
        if is_unknown(symbol):
            return _json(yahoo.summary_not_found_payload(symbol), status=404)
        return _json(yahoo.summary_payload(symbol, self.today(), calendar=self.calendar))

    # --- Polygon --------------------------------------------------------------------------

    async def polygon_aggs(self, request: web.Request, fault: Fault | None) -> web.Response:
        ticker = request.match_info["symbol"].upper()
        # Forex tickers are `C:EURUSD`; the series is the pair's (`EURUSD=X`).
        symbol = f"{ticker[2:]}=X" if ticker.startswith("C:") else ticker
        start, end = _iso(request.match_info["start"]), _iso(request.match_info["end"])
        if start is None or end is None:
            return _json(polygon.error_payload("ERROR", "Could not parse the date"), status=400)
        adjusted = request.query.get("adjusted", "true") != "false"
        today = self.today()
        rows = (
            []
            if is_unknown(symbol)
            else polygon.aggs_rows(
                symbol,
                max(start, EPOCH),
                min(end, today),
                adjusted=adjusted,
                today=today,
                calendar=self.calendar,
            )
        )
        limit = min(int(request.query.get("limit", "5000")), self.config.polygon_page_size)
        next_url = None
        if len(rows) > limit:
            rows = rows[:limit]
            resume = datetime.fromtimestamp(int(rows[-1]["t"]) / 1000, tz=EXCHANGE_TZ)  # type: ignore[call-overload]
            following = resume.date() + timedelta(days=1)
            next_url = str(
                request.url.with_path(
                    f"/v2/aggs/ticker/{ticker}/range/1/day/{following}/{end}"
                ).with_query({"adjusted": str(adjusted).lower(), "sort": "asc", "limit": limit})
            )
        self.bars_served[symbol] += len(rows)
        return _json(polygon.aggs_payload(ticker, rows, adjusted=adjusted, next_url=next_url))

    async def polygon_grouped(self, request: web.Request, fault: Fault | None) -> web.Response:
        day = _iso(request.match_info["day"])
        if day is None:
            return _json(polygon.error_payload("ERROR", "Could not parse the date"), status=400)
        universe = [s.upper() for s in self.config.universe]
        return _json(
            polygon.grouped_payload(universe, day, today=self.today(), calendar=self.calendar)
        )

    async def polygon_dividends(self, request: web.Request, fault: Fault | None) -> web.Response:
        symbol = request.query.get("ticker", "").upper()
        since = _iso(request.query.get("ex_dividend_date.gte"))
        if not symbol or is_unknown(symbol):
            return _json({"results": [], "status": "OK", "request_id": "sim"})
        return _json(
            polygon.dividends_payload(
                symbol,
                since,
                today=self.today(),
                calendar=self.calendar,
                withdrawn=self.withdrawn(symbol),
            )
        )

    async def polygon_splits(self, request: web.Request, fault: Fault | None) -> web.Response:
        symbol = request.query.get("ticker", "").upper()
        since = _iso(request.query.get("execution_date.gte"))
        if not symbol or is_unknown(symbol):
            return _json({"results": [], "status": "OK", "request_id": "sim"})
        return _json(
            polygon.splits_payload(symbol, since, today=self.today(), calendar=self.calendar)
        )

    async def polygon_ticker(self, request: web.Request, fault: Fault | None) -> web.Response:
        symbol = request.match_info["symbol"].upper()
        if is_unknown(symbol):
            return _json(
                {"status": "NOT_FOUND", "request_id": "sim", "message": "Ticker not found."},
                status=404,
            )
        return _json(polygon.ticker_payload(symbol))

    # --- Tiingo ---------------------------------------------------------------------------

    async def tiingo_prices(self, request: web.Request, fault: Fault | None) -> web.Response:
        symbol = request.match_info["symbol"].upper()
        if is_unknown(symbol):
            return _json(tiingo.not_found_payload(symbol), status=404)
        today = self.today()
        start = _iso(request.query.get("startDate")) or today - timedelta(days=31)
        end = min(_iso(request.query.get("endDate")) or today, today)
        rows = tiingo.prices_payload(
            symbol,
            max(start, EPOCH),
            end,
            today=today,
            calendar=self.calendar,
            withdrawn=self.withdrawn(symbol),
        )
        self.bars_served[symbol] += len(rows)
        return _json(rows)

    async def tiingo_fx_prices(self, request: web.Request, fault: Fault | None) -> web.Response:
        ticker = request.match_info["symbol"].lower()
        symbol = f"{ticker.upper()}=X"
        if len(ticker) != 6 or is_unknown(ticker):
            return _json(tiingo.not_found_payload(ticker), status=404)
        today = self.today()
        start = _iso(request.query.get("startDate")) or today - timedelta(days=31)
        end = min(_iso(request.query.get("endDate")) or today, today)
        rows = tiingo.fx_prices_payload(
            symbol, max(start, EPOCH), end, today=today, calendar=self.calendar
        )
        self.bars_served[symbol] += len(rows)
        return _json(rows)

    async def tiingo_meta(self, request: web.Request, fault: Fault | None) -> web.Response:
        symbol = request.match_info["symbol"].upper()
        if is_unknown(symbol):
            return _json(tiingo.not_found_payload(symbol), status=404)
        return _json(tiingo.meta_payload(symbol, self.today()))

    async def tiingo_iex(self, request: web.Request, fault: Fault | None) -> web.Response:
        names = [
            t.strip().upper() for t in request.query.get("tickers", "").split(",") if t.strip()
        ]
        today = self.today()
        return _json(
            [
                tiingo.iex_row(s, today, self.last_trade(s), calendar=self.calendar)
                for s in names
                if not is_unknown(s)
            ]
        )


def _has_key(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme in ("Bearer", "Token") and token.strip():
        return True
    return bool(request.query.get("apiKey") or request.query.get("token"))


def _cookie(request: web.Request) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    jar.load(request.headers.get("Cookie", ""))
    morsel = jar.get("A3")
    return morsel.value if morsel is not None and morsel.value else None
