"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from litestar import Litestar, Router
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from service.api.assets import AssetController
from service.api.auth import AUTH_MIDDLEWARE, SECURITY_COMPONENTS, SECURITY_REQUIREMENT
from service.api.health import HealthController
from service.api.holdings_reads import MAX_KEPT_HOLDINGS_BYTES, KeptHoldings
from service.api.key_cache import ApiKeyCache
from service.api.metrics import RequestMetrics, ScrapeReads, metrics_endpoint
from service.api.openapi_responses import DocumentedResponses, state_msgspec_schemas
from service.api.polled_reads import MAX_CACHED_BODY_BYTES, VersionedCache
from service.api.portfolios import PortfolioController, ReportController
from service.api.problems import EXCEPTION_HANDLERS
from service.api.rate_limit import RateLimiter, StreamSlots
from service.api.request_context import request_edge_middleware
from service.api.submit_routes import submit_routes
from service.api.tasks import TaskController
from service.core import idempotency, redis_clients, task_registry
from service.core.celery_config import create_publisher_app
from service.core.clock import Clock, clock_from_settings, exchange_today
from service.core.contracts import CONTRACTS, TaskContract
from service.core.database import create_pool
from service.core.logs import configure_logging, get_logger
from service.core.publisher import TaskPublisher
from service.core.rates import parse_rate
from service.core.redis_connection import redis_endpoint
from service.core.settings import Settings
from service.core.trading_calendar import load_holiday_tables

log = get_logger(__name__)


async def sweep_forever(settings: Settings, app: Litestar) -> None:
    """Mark tasks of dead workers RETRY, then FAILURE when nothing picks them up again, and
    end FAILURE the tasks no worker ever claimed."""
    stale = timedelta(seconds=settings.task_stale_seconds)
    lost = timedelta(seconds=settings.task_lost_after_seconds)
    while True:
        await asyncio.sleep(settings.task_sweep_interval_seconds)
        try:
            async with app.state.pool.acquire() as connection:
                retried, failed = await task_registry.sweep_lost_tasks(
                    connection, stale_after=stale, lost_after=lost
                )
                never_started = await task_registry.fail_never_started(connection, lost_after=lost)
                await idempotency.prune(connection)
            if retried or failed or never_started:
                log.warning(
                    "lost tasks swept",
                    marked_retry=retried,
                    marked_failure=failed,
                    never_started=never_started,
                )
        except Exception:
            log.exception("task sweep failed")


def api_v1_router(contracts: tuple[type[TaskContract], ...] = CONTRACTS) -> Router:
    """Every authenticated route, under /api/v1: a submit route per contract, and the rest."""
    return Router(
        path="/api/v1",
        route_handlers=[
            *submit_routes(contracts),
            TaskController,
            PortfolioController,
            ReportController,
            AssetController,
        ],
        middleware=[AUTH_MIDDLEWARE],
        security=SECURITY_REQUIREMENT,
    )


def create_app(
    settings: Settings,
    *,
    contracts: tuple[type[TaskContract], ...] = CONTRACTS,
    clock: Clock | None = None,
) -> Litestar:
    """Build the API for `settings`, accepting the tasks in `contracts`; I/O resources open
    in the lifespan. "Now" comes from `clock` (in-process tests pin it), else from the
    settings' clock."""
    now = clock or clock_from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.clock = now
        # The calendar's first lookup costs about a second; not on a request's event loop.
        await asyncio.to_thread(load_holiday_tables, around=exchange_today(now))
        # API queries keep no session state (locks are transaction-scoped), and skipping the
        # reset query saves a round trip per pool checkout (two per submit).
        app.state.pool = await create_pool(
            settings,
            application_name="findash-api",
            stateless_sessions=True,
            acquire_timeout=settings.db_acquire_timeout_seconds,
        )
        app.state.api_keys = ApiKeyCache(app.state.pool)
        app.state.bodies = VersionedCache[bytes](max_bytes=MAX_CACHED_BODY_BYTES)
        app.state.kept_holdings = VersionedCache[KeptHoldings](max_bytes=MAX_KEPT_HOLDINGS_BYTES)
        app.state.redis = redis_clients.async_client(
            redis_endpoint(settings),
            budget_seconds=redis_clients.API_RETRY_SECONDS,
            socket_timeout=1,
            connect_timeout=0.5,
        )
        celery_app = create_publisher_app(settings)
        app.state.publisher = TaskPublisher(
            celery_app, timeout_seconds=settings.publish_timeout_seconds
        )
        app.state.submit_limiter = RateLimiter(
            app.state.redis, parse_rate(settings.submit_rate_limit), namespace="submit"
        )
        app.state.symbol_limiter = RateLimiter(
            app.state.redis, parse_rate(settings.submit_symbol_limit), namespace="symbols"
        )
        app.state.stream_slots = StreamSlots(app.state.redis, per_key=settings.sse_streams_per_key)
        app.state.scrape_reads = ScrapeReads()
        separate_broker = settings.celery_broker_url != settings.redis_url
        app.state.broker_redis = (
            redis_clients.async_client(
                redis_endpoint(settings, settings.celery_broker_url),
                budget_seconds=redis_clients.API_RETRY_SECONDS,
                socket_timeout=1,
                connect_timeout=0.5,
            )
            if separate_broker
            else app.state.redis
        )
        sweeper = asyncio.create_task(sweep_forever(settings, app))
        # Everything allocated so far lives as long as the process; keeping it out of the
        # collector's generations makes full collections short (they showed as p99 spikes).
        gc.freeze()
        log.info("api started", settings=settings.redacted())
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            app.state.publisher.close()
            celery_app.close()
            await app.state.pool.close()
            if separate_broker:
                await app.state.broker_redis.aclose()
            await app.state.redis.aclose()

    cors = CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None
    app = Litestar(
        route_handlers=[HealthController, metrics_endpoint, api_v1_router(contracts)],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[DocumentedResponses()],
        cors_config=cors,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="findash",
            version="0.1.0",
            description="Background tasks for a financial dashboard: submit, follow and cancel "
            "market-data and analytics tasks. Every /api/v1 route needs "
            "`Authorization: Bearer <API key>`; errors are RFC 9457 problem details.",
            path="/schema",
            components=SECURITY_COMPONENTS,
            render_plugins=[SwaggerRenderPlugin()],
        ),
        logging_config=None,
        debug=False,
    )
    state_msgspec_schemas(app)
    # Outside the router, so 404s and 401s are counted, logged and carry the request id.
    app.asgi_handler = request_edge_middleware(
        app.asgi_handler,
        metrics=RequestMetrics(
            submit_routes={
                f"/api/v1/tasks/{contract.submit_path}": contract.name
                for contract in contracts
                if contract.submit_path is not None
            }
        ),
    )
    return app


def create_app_from_env() -> Litestar:
    """Factory for ASGI servers (one call per server process): settings and logging from
    the environment."""
    settings = Settings.from_env()
    configure_logging(service="api", level=settings.log_level, fmt=settings.log_format)
    return create_app(settings)
