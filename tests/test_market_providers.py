"""Each provider adapter over real HTTP against the simulated exchange: happy paths, every
failure the real services produce, the Yahoo crumb handshake, symbol spelling, the shared
limiter's Retry-After pause, failover and the circuit breaker."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta

import aiohttp
import pytest
import redis.asyncio as aioredis

from service.core.clock import exchange_today
from service.core.redis_keys import PROVIDER_RATE_LIMIT
from service.core.settings import Settings
from service.core.trading_calendar import NYSE
from tests.conftest import PINNED_CLOCK, PINNED_LAST_SESSION
from tests.market_sim import Sim, failover, market_settings, slots
from workers.market_data.circuit_breaker import BreakerState
from workers.market_data.failover import SymbolFailed
from workers.market_data.providers.base import ErrorKind, Provider, ProviderError
from workers.market_data.providers.polygon import PolygonProvider
from workers.market_data.providers.registry import ProviderSlot

pytestmark = pytest.mark.usefixtures("clean_exchange")


@pytest.fixture
def msettings(base_env: dict[str, str], sim: Sim) -> Settings:
    """Settings with all three providers on the simulated exchange."""
    return market_settings(base_env, sim.url, MARKET_DATA_PROVIDERS="yahoo,polygon,tiingo")


@pytest.fixture
def providers(
    msettings: Settings, http: aiohttp.ClientSession, redis_client: aioredis.Redis
) -> dict[str, ProviderSlot]:
    """Fresh adapters by name."""
    return {s.name: s for s in slots(msettings, session=http, redis=redis_client)}


def _window(days: int = 60) -> tuple[date, date]:
    today = exchange_today(PINNED_CLOCK)
    return today - timedelta(days=days), today


class TestHistoryHappyPaths:
    @pytest.mark.parametrize("name", ["yahoo", "polygon", "tiingo"])
    async def test_history(self, name: str, providers: dict[str, ProviderSlot], sim: Sim) -> None:
        """Every provider returns one bar per trading day of the window, all with a close."""
        start, end = _window()
        history = await providers[name].provider.history("HAPPY", start=start, end=end)
        expected = NYSE.trading_days(start, PINNED_LAST_SESSION)
        assert [b.date for b in history.bars] == expected
        assert all(b.close > 0 and b.adj_close for b in history.bars)

    async def test_providers_serve_the_same_prices(
        self, providers: dict[str, ProviderSlot]
    ) -> None:
        """The three adapters agree on close and adj_close for the same simulated series."""
        start, end = _window(400)
        answers = [
            await providers[n].provider.history("SAME", start=start, end=end)
            for n in ("yahoo", "polygon", "tiingo")
        ]
        reference = answers[0]
        for other in answers[1:]:
            for mine, theirs in zip(other.bars, reference.bars, strict=True):
                assert mine.close == pytest.approx(theirs.close, rel=2e-4)
                assert mine.adj_close == pytest.approx(theirs.adj_close, rel=2e-4)

    @pytest.mark.parametrize(
        ("name", "served_as"), [("yahoo", "BRK-B"), ("tiingo", "BRK-B"), ("polygon", "BRK.B")]
    )
    async def test_symbol_spelling(
        self, name: str, served_as: str, providers: dict[str, ProviderSlot], sim: Sim
    ) -> None:
        """BRK.B is asked for as BRK-B on Yahoo and Tiingo, as BRK.B on Polygon, and comes
        back under its canonical spelling."""
        before = sim.exchange.bars_served[served_as]
        start, end = _window(10)
        history = await providers[name].provider.history("BRK.B", start=start, end=end)
        assert history.symbol == "BRK.B"
        assert sim.exchange.bars_served[served_as] > before

    async def test_polygon_follows_next_url(
        self, providers: dict[str, ProviderSlot], sim: Sim
    ) -> None:
        """Polygon's paginated aggregates are followed to the end."""
        start, end = _window(120)
        whole = await providers["polygon"].provider.history("PAGED", start=start, end=end)
        sim.configure(polygon_page_size=10)
        paged = await providers["polygon"].provider.history("PAGED", start=start, end=end)
        assert len(whole.bars) > 30
        assert paged.bars == whole.bars


class TestYahooChartShapes:
    async def test_nulls_and_live_bar_over_http(
        self, providers: dict[str, ProviderSlot], sim: Sim
    ) -> None:
        """Null prices are missing bars (never zeros) and the live bar leaves one bar per
        exchange date, priced as the live one."""
        sim.configure(null_every=5, live_bar=True)
        start, end = _window(60)
        before = sim.exchange.bars_served["LIVE"]
        history = await providers["yahoo"].provider.history("LIVE", start=start, end=end)
        days = [b.date for b in history.bars]
        trading = NYSE.trading_days(start, end)
        assert len(days) == len(set(days))
        assert len(days) == sim.exchange.bars_served["LIVE"] - before
        assert len(days) < len(trading)
        assert set(days) <= set(trading)
        assert all(b.close > 0 for b in history.bars)


class TestUnknownSymbols:
    @pytest.mark.parametrize("name", ["yahoo", "tiingo"])
    async def test_not_found(self, name: str, providers: dict[str, ProviderSlot]) -> None:
        """An unknown symbol is a NOT_FOUND error."""
        start, end = _window()
        with pytest.raises(ProviderError) as caught:
            await providers[name].provider.history("ZZNOPE", start=start, end=end)
        assert caught.value.kind is ErrorKind.NOT_FOUND

    async def test_polygon_unknown_is_empty(self, providers: dict[str, ProviderSlot]) -> None:
        """Polygon answers an unknown ticker with an OK and no results."""
        start, end = _window()
        history = await providers["polygon"].provider.history("ZZNOPE", start=start, end=end)
        assert history.bars == []

    @pytest.mark.parametrize("fault", ["chart_null", "empty_result"])
    async def test_yahoo_no_data_shapes(
        self, fault: str, providers: dict[str, ProviderSlot], sim: Sim
    ) -> None:
        """`{"chart": null}` and an empty result both mean no such symbol."""
        sim.configure(faults=[fault], fault_rate=1.0)
        start, end = _window()
        with pytest.raises(ProviderError) as caught:
            await providers["yahoo"].provider.history("NODATA", start=start, end=end)
        assert caught.value.kind is ErrorKind.NOT_FOUND


class TestTransportFailures:
    @pytest.mark.parametrize(
        ("fault", "kind", "throttled"),
        [
            ("500", ErrorKind.TRANSIENT, False),
            ("429", ErrorKind.TRANSIENT, True),
            ("malformed", ErrorKind.MALFORMED, False),
        ],
    )
    @pytest.mark.parametrize("name", ["yahoo", "polygon", "tiingo"])
    async def test_classified(
        self,
        name: str,
        fault: str,
        kind: ErrorKind,
        throttled: bool,
        providers: dict[str, ProviderSlot],
        sim: Sim,
    ) -> None:
        """A 500, a 429 and an undecodable body are classified, never a crash or empty data."""
        sim.configure(faults=[fault], fault_rate=1.0, retry_after_seconds=0)
        start, end = _window()
        with pytest.raises(ProviderError) as caught:
            await providers[name].provider.history("FAULTY", start=start, end=end)
        assert caught.value.kind is kind
        assert caught.value.throttled is throttled

    async def test_timeout_is_transient(
        self, msettings: Settings, redis_client: aioredis.Redis, sim: Sim
    ) -> None:
        """A response slower than the session's timeout is a transient error."""
        sim.configure(faults=["slow"], fault_rate=1.0, slow_ms=2000)
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            (yahoo, *_) = slots(msettings, session=session, redis=redis_client)
            start, end = _window()
            with pytest.raises(ProviderError) as caught:
                await yahoo.provider.history("SLOW", start=start, end=end)
        assert caught.value.kind is ErrorKind.TRANSIENT
        assert "timeout" in caught.value.reason

    async def test_missing_api_key_is_permanent(
        self, msettings: Settings, providers: dict[str, ProviderSlot]
    ) -> None:
        """Polygon without a key is refused (401) and that is permanent."""
        keyed = providers["polygon"].provider
        assert isinstance(keyed, PolygonProvider)
        keyless = PolygonProvider(
            transport=keyed._transport,  # the same limiter, but no key
            base_url=msettings.polygon_base_url,
            api_key="",
            clock=PINNED_CLOCK,
        )
        start, end = _window()
        with pytest.raises(ProviderError) as caught:
            await keyless.history("AAPL", start=start, end=end)
        assert caught.value.kind is ErrorKind.PERMANENT


class TestRetryAfter:
    async def test_429_pauses_the_shared_limiter_and_is_retried(
        self,
        msettings: Settings,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
        sim: Sim,
    ) -> None:
        """After a 429 with Retry-After: 1 the next request waits at least a second (the shared
        limiter is paused), and the retried fetch succeeds."""
        chain = failover(msettings, session=http, redis=redis_client)
        sim.configure(faults=["429"], fault_rate=1.0, retry_after_seconds=1)
        start, end = _window()
        began = time.monotonic()
        throttled = sim.count("429")
        fetch = asyncio.ensure_future(chain.history("RETRY", start=start, end=end))
        while sim.count("429") == throttled:  # noqa: ASYNC110 - the server is in this loop
            await asyncio.sleep(0.01)
        sim.configure()
        first_429_at = time.monotonic()
        history, provider = await fetch
        assert provider == "yahoo"
        assert history.bars
        assert time.monotonic() - first_429_at >= 0.9
        assert time.monotonic() - began >= 1.0


class TestYahooCrumb:
    async def test_handshake_once_then_refresh_on_invalid_crumb(
        self, providers: dict[str, ProviderSlot], sim: Sim
    ) -> None:
        """quoteSummary gets a cookie and a crumb once, reuses them, and after the crumb is
        rejected runs the handshake again and succeeds."""
        yahoo = providers["yahoo"].provider
        crumbs_before = sim.count("crumb")
        first = await yahoo.asset_info("ACME")
        second = await yahoo.asset_info("BRK.B")
        assert first.name == "Acme Holdings Inc."
        assert second.symbol == "BRK.B"
        assert sim.count("crumb") == crumbs_before + 1
        await _post(sim, "/_sim/rotate_crumb")
        rejected_before = sim.count("401")
        third = await yahoo.asset_info("ACME")
        assert third == first
        assert sim.count("401") == rejected_before + 1
        assert sim.count("crumb") == crumbs_before + 2

    async def test_unknown_symbol_info(self, providers: dict[str, ProviderSlot]) -> None:
        """quoteSummary of an unknown symbol is NOT_FOUND."""
        with pytest.raises(ProviderError) as caught:
            await providers["yahoo"].provider.asset_info("ZZNOPE")
        assert caught.value.kind is ErrorKind.NOT_FOUND


async def _post(sim: Sim, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.post(f"{sim.url}{path}") as response:
        assert response.status == 200


class TestQuotesAndInfo:
    @pytest.mark.parametrize("name", ["yahoo", "polygon", "tiingo"])
    async def test_quotes(self, name: str, providers: dict[str, ProviderSlot]) -> None:
        """Latest quotes come back per symbol; unknown symbols are per-symbol errors."""
        provider: Provider = providers[name].provider
        answers = await provider.quotes(["AAPL", "MSFT", "ZZNOPE"])
        assert {s for s, a in answers.items() if not isinstance(a, ProviderError)} == {
            "AAPL",
            "MSFT",
        }
        assert isinstance(answers["ZZNOPE"], ProviderError)
        assert all(a.price > 0 for a in answers.values() if not isinstance(a, ProviderError))

    @pytest.mark.parametrize("name", ["yahoo", "polygon", "tiingo"])
    async def test_asset_info(self, name: str, providers: dict[str, ProviderSlot]) -> None:
        """Every provider gives at least a name for a listed symbol."""
        info = await providers[name].provider.asset_info("ACME")
        assert info.symbol == "ACME"
        assert info.name == "Acme Holdings Inc."


class TestFailoverAndBreaker:
    async def test_unknown_on_all_providers_lists_each_reason(
        self, msettings: Settings, http: aiohttp.ClientSession, redis_client: aioredis.Redis
    ) -> None:
        """A symbol no provider knows fails with every provider's reason."""
        chain = failover(msettings, session=http, redis=redis_client)
        with pytest.raises(SymbolFailed) as caught:
            await chain.asset_info("ZZNOPE")
        assert caught.value.kind is ErrorKind.NOT_FOUND
        assert [e.provider or e.reason.split(":")[0] for e in caught.value.errors] == [
            "yahoo",
            "polygon",
            "tiingo",
        ]

    async def test_quotes_retry_only_the_symbols_that_failed(
        self,
        base_env: dict[str, str],
        sim: Sim,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
    ) -> None:
        """A quote that met a 500 is asked for again on the same provider; the others are not."""
        settings = market_settings(base_env, sim.url, MARKET_DATA_PROVIDERS="yahoo")
        chain = failover(settings, session=http, redis=redis_client)
        sim.configure(faults=["500"], fault_rate=1.0, fault_limit=1, fault_symbols=["QFLAKY"])
        requests = sim.count("yahoo:total")
        found, failed = await chain.quotes(["QFLAKY", "QSTEADY1", "QSTEADY2"])
        assert sorted(found) == ["QFLAKY", "QSTEADY1", "QSTEADY2"]
        assert failed == {}
        assert sim.count("yahoo:total") - requests == 4

    async def test_breaker_opens_fails_over_and_recovers(
        self,
        base_env: dict[str, str],
        sim: Sim,
        http: aiohttp.ClientSession,
        redis_client: aioredis.Redis,
    ) -> None:
        """While Yahoo answers 500s its breaker opens and Polygon serves without Yahoo being
        asked; once Yahoo recovers and the cooldown passes, Yahoo serves again."""
        settings = market_settings(
            base_env,
            sim.url,
            MARKET_DATA_PROVIDERS="yahoo,polygon",
            MARKET_DATA_RETRY_BUDGET_SECONDS="0.5",
            MARKET_DATA_BREAKER_COOLDOWN_SECONDS="3",
        )
        chain = failover(settings, session=http, redis=redis_client)
        yahoo_slot = chain.slots[0]
        sim.configure(faults=["500"], fault_rate=1.0, fault_providers=["yahoo"])
        start, end = _window(20)
        for i in range(4):
            _, provider = await chain.history(f"BRK{i}", start=start, end=end)
            assert provider == "polygon"
        assert yahoo_slot.breaker.state(time.monotonic()) is BreakerState.OPEN
        yahoo_requests = sim.count("yahoo:total")
        _, provider = await chain.history("SKIPPED", start=start, end=end)
        assert provider == "polygon"
        assert sim.count("yahoo:total") == yahoo_requests  # open circuit: Yahoo not asked
        sim.configure()
        await asyncio.sleep(3.1)
        _, provider = await chain.history("RECOVERED", start=start, end=end)
        assert provider == "yahoo"
        assert yahoo_slot.breaker.state(time.monotonic()) is BreakerState.CLOSED

    async def test_limiter_key_is_paused_by_429(
        self, providers: dict[str, ProviderSlot], redis_client: aioredis.Redis, sim: Sim
    ) -> None:
        """429s that repeat (the provider's rate is exceeded) move its shared schedule into
        the future by Retry-After; a single one does not."""
        sim.configure(faults=["429"], fault_rate=1.0, retry_after_seconds=30)
        start, end = _window()
        tiingo = providers["tiingo"].provider
        with pytest.raises(ProviderError):
            await tiingo.history("PAUSE0", start=start, end=end)
        keys = [k async for k in redis_client.scan_iter(match=f"{PROVIDER_RATE_LIMIT}test-*tiingo")]
        seconds, micros = await redis_client.time()
        now_us = seconds * 1_000_000 + micros
        ahead = [int(await redis_client.get(k) or 0) - now_us for k in keys]
        assert max(ahead, default=0) < 5_000_000
        for symbol in ("PAUSE1", "PAUSE2"):
            with pytest.raises(ProviderError):
                await tiingo.history(symbol, start=start, end=end)
        keys = [k async for k in redis_client.scan_iter(match=f"{PROVIDER_RATE_LIMIT}test-*tiingo")]
        seconds, micros = await redis_client.time()
        now_us = seconds * 1_000_000 + micros
        paused = [int(await redis_client.get(k) or 0) - now_us for k in keys]
        assert max(paused) > 20_000_000
