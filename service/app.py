"""The Litestar application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from service.database import create_pool
from service.health import HealthController
from service.logs import get_logger
from service.problems import EXCEPTION_HANDLERS
from service.request_context import request_context_middleware
from service.settings import Settings
from workers.celery_app import create_celery_app

log = get_logger(__name__)


def create_app(settings: Settings) -> Litestar:
    """Build the API for `settings`; I/O resources open in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.pool = await create_pool(settings, application_name="findash-api")
        app.state.redis = aioredis.Redis.from_url(
            settings.redis_url,
            socket_timeout=2,
            socket_connect_timeout=2,
            health_check_interval=25,
        )
        app.state.celery = create_celery_app(settings)
        log.info("api started", settings=settings.redacted())
        try:
            yield
        finally:
            await app.state.pool.close()
            await app.state.redis.aclose()
            app.state.celery.close()

    cors = CORSConfig(allow_origins=list(settings.cors_origins)) if settings.cors_origins else None
    return Litestar(
        route_handlers=[HealthController],
        lifespan=[lifespan],
        middleware=[request_context_middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=cors,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="findash",
            version="0.1.0",
            description="Background tasks for a financial dashboard: submit, follow and cancel "
            "market-data and analytics tasks.",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        logging_config=None,
        debug=False,
    )


def create_app_from_env() -> Litestar:
    """Factory for ASGI servers: settings from the environment."""
    return create_app(Settings.from_env())
