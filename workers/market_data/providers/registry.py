"""The configured providers of one worker process, in failover order, with their breakers.

Adapters, their concurrency caps and breakers live as long as the process's
session, so a Yahoo crumb and a breaker's memory carry over between tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import redis.asyncio as aioredis

from service.core.clock import Clock
from service.core.logs import get_logger
from service.core.settings import Settings
from workers.market_data.circuit_breaker import CircuitBreaker
from workers.market_data.providers.base import Provider
from workers.market_data.providers.polygon import PolygonProvider
from workers.market_data.providers.tiingo import TiingoProvider
from workers.market_data.providers.transport import Transport
from workers.market_data.providers.yahoo import YahooProvider
from workers.market_data.rate_limiter import RedisRateLimiter

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ProviderSlot:
    """One provider and the breaker guarding it in this process."""

    provider: Provider
    breaker: CircuitBreaker

    @property
    def name(self) -> str:
        """The provider's token (`yahoo`, `polygon`, `tiingo`)."""
        return self.provider.name


def _transport(
    settings: Settings,
    name: str,
    *,
    session: aiohttp.ClientSession,
    redis: aioredis.Redis,
    namespace: str,
) -> Transport:
    rate: str = getattr(settings, f"{name}_rate_limit")
    concurrency: int = getattr(settings, f"{name}_concurrency")
    limiter = RedisRateLimiter(redis, name=f"{namespace}{name}", rate=rate)
    return Transport(provider=name, session=session, limiter=limiter, concurrency=concurrency)


def build_provider(
    settings: Settings,
    name: str,
    *,
    session: aiohttp.ClientSession,
    redis: aioredis.Redis,
    clock: Clock,
    namespace: str = "",
) -> Provider | None:
    """The adapter for `name`, or None when it needs an API key that is not set.

    `namespace` prefixes the rate limiter's key (tests isolate their limiters with it).
    """
    transport = _transport(settings, name, session=session, redis=redis, namespace=namespace)
    if name == "yahoo":
        return YahooProvider(
            transport=transport,
            chart_url=settings.yahoo_base_url,
            quote_url=settings.yahoo_quote_url,
            cookie_url=settings.yahoo_cookie_url,
            crumb_url=settings.yahoo_crumb_url,
        )
    if name == "polygon" and settings.polygon_api_key:
        return PolygonProvider(
            transport=transport,
            base_url=settings.polygon_base_url,
            api_key=settings.polygon_api_key,
            clock=clock,
        )
    if name == "tiingo" and settings.tiingo_api_key:
        return TiingoProvider(
            transport=transport, base_url=settings.tiingo_base_url, api_key=settings.tiingo_api_key
        )
    log.warning("provider skipped: no API key", provider=name)
    return None


def build_slots(
    settings: Settings,
    *,
    session: aiohttp.ClientSession,
    redis: aioredis.Redis,
    clock: Clock,
    namespace: str = "",
) -> list[ProviderSlot]:
    """Every usable provider in `MARKET_DATA_PROVIDERS` order."""
    slots: list[ProviderSlot] = []
    for name in settings.market_data_providers:
        provider = build_provider(
            settings, name, session=session, redis=redis, clock=clock, namespace=namespace
        )
        if provider is not None:
            slots.append(
                ProviderSlot(
                    provider=provider,
                    breaker=CircuitBreaker(
                        threshold=settings.market_data_breaker_failures,
                        cooldown=settings.market_data_breaker_cooldown_seconds,
                    ),
                )
            )
    return slots


_PROCESS_SLOTS: dict[int, list[ProviderSlot]] = {}


def process_slots(
    settings: Settings, *, session: aiohttp.ClientSession, redis: aioredis.Redis, clock: Clock
) -> list[ProviderSlot]:
    """This process's slots for `session` (built once per session)."""
    key = id(session)
    if key not in _PROCESS_SLOTS:
        _PROCESS_SLOTS.clear()
        _PROCESS_SLOTS[key] = build_slots(settings, session=session, redis=redis, clock=clock)
    return _PROCESS_SLOTS[key]
