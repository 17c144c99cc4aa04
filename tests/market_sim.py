"""Helpers for market-data tests: an in-process simulated exchange on a loopback port
(real HTTP, config changed directly between requests) and settings pointing at it.

A pytest plugin (tests/conftest.py `pytest_plugins`): a module that wants the exchange
marks itself `pytestmark = pytest.mark.usefixtures("clean_exchange")`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from service.core.clock import Clock, clock_from_settings
from service.core.settings import Settings
from service.dev.embedded import free_port
from tests.conftest import PINNED_CLOCK
from workers.market_data.failover import Failover
from workers.market_data.providers.registry import ProviderSlot, build_slots
from workers.market_data.simulated_exchange import ExchangeConfig, SimulatedExchange


@dataclass
class Sim:
    """A running simulated exchange and its base URL."""

    exchange: SimulatedExchange
    url: str

    def configure(self, **fields: object) -> None:
        """Replace the exchange's config (unset fields take their defaults)."""
        self.exchange.config = ExchangeConfig(**fields)  # type: ignore[arg-type]

    def count(self, key: str) -> int:
        """How many requests of a kind the exchange has answered."""
        return self.exchange.requests[key]


@asynccontextmanager
async def serve_exchange(
    config: ExchangeConfig | None = None, *, clock: Clock = PINNED_CLOCK
) -> AsyncIterator[Sim]:
    """Serve a fresh simulated exchange, on the session's pinned clock unless `clock` is
    given, until the block ends."""
    exchange = SimulatedExchange(config, clock=clock)
    runner = web.AppRunner(exchange.app(), access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Sim(exchange=exchange, url=f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def market_settings(base_env: dict[str, str], url: str, **overrides: str) -> Settings:
    """Settings with every provider pointed at `url`, generous limits and short budgets."""
    env = {
        **base_env,
        "YAHOO_BASE_URL": url,
        "POLYGON_BASE_URL": url,
        "TIINGO_BASE_URL": url,
        "POLYGON_API_KEY": "test-polygon-key",
        "TIINGO_API_KEY": "test-tiingo-key",
        "YAHOO_RATE_LIMIT": "2000/second",
        "POLYGON_RATE_LIMIT": "2000/second",
        "TIINGO_RATE_LIMIT": "2000/second",
        "YAHOO_CONCURRENCY": "32",
        "POLYGON_CONCURRENCY": "32",
        "TIINGO_CONCURRENCY": "32",
        "MARKET_DATA_RETRY_BUDGET_SECONDS": "3",
        "MARKET_DATA_BREAKER_FAILURES": "3",
        "MARKET_DATA_BREAKER_COOLDOWN_SECONDS": "0.5",
        **overrides,
    }
    return Settings.from_env(env)


def slots(
    settings: Settings, *, session: aiohttp.ClientSession, redis: aioredis.Redis
) -> list[ProviderSlot]:
    """Fresh providers and breakers with rate-limiter keys private to the caller."""
    return build_slots(
        settings,
        session=session,
        redis=redis,
        clock=clock_from_settings(settings),
        namespace=f"test-{uuid.uuid4().hex[:8]}:",
    )


def failover(
    settings: Settings, *, session: aiohttp.ClientSession, redis: aioredis.Redis
) -> Failover:
    """A failover chain over fresh `slots`."""
    return Failover(
        slots(settings, session=session, redis=redis),
        budget=settings.market_data_retry_budget_seconds,
    )


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[Sim]:
    """One simulated exchange per test module."""
    async with serve_exchange() as running:
        yield running


@pytest.fixture
def clean_exchange(sim: Sim) -> Iterator[None]:
    """The test starts and ends with no latency, no faults and the exchange's own clock."""
    sim.configure()
    yield
    sim.configure()
