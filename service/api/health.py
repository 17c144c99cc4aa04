"""Liveness and readiness: open routes for load balancers and `just dev`."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from service.core.logs import get_logger

log = get_logger(__name__)
_CHECK_TIMEOUT_S = 2.0


class Health(msgspec.Struct, frozen=True):
    """Liveness answer."""

    status: str


class Readiness(msgspec.Struct, frozen=True):
    """Readiness answer: each dependency's state, and what is down."""

    status: str
    checks: dict[str, str]
    down: list[str]


async def _check(name: str, probe: Any) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe, timeout=_CHECK_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        log.warning("readiness check failed", dependency=name, error=str(exc) or type(exc).__name__)
        return name, f"down: {type(exc).__name__}"
    return name, "ok"


class HealthController(Controller):
    """`/health` says the process is up; `/ready` checks Postgres and Redis."""

    path = "/"
    tags = ["health"]

    @get("/health", summary="Liveness")
    async def health(self) -> Health:
        """The API process is running."""
        return Health(status="ok")

    @get(
        "/ready",
        summary="Readiness",
        responses={
            503: ResponseSpec(Readiness, description="What is down.", generate_examples=False)
        },
    )
    async def ready(self, state: State) -> Response[Readiness]:
        """200 when Postgres and Redis answer within 2 s; 503 naming what is down."""
        results = await asyncio.gather(
            _check("postgres", state.pool.fetchval("SELECT 1")),
            _check("redis", state.redis.ping()),
        )
        checks = dict(results)
        down = [name for name, verdict in results if verdict != "ok"]
        return Response(
            Readiness(status="down" if down else "ok", checks=checks, down=down),
            status_code=503 if down else 200,
        )
