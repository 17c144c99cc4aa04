"""The API's outermost layer (pure ASGI): per-request ids, the one canonical log line per
request, and the request metrics, in one wrapper around the whole app so that 404s and the
401s of the authentication middleware carry them too."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from service.api.metrics import RequestMetrics
from service.core.logs import get_logger

log = get_logger("service.access")
_ACCESS_LOGGER = logging.getLogger("service.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
REQUEST_ID_HEADER = b"x-request-id"


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's X-Request-ID if it is sane, else a fresh one (32 random hex digits)."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
    # A quarter of uuid4().hex's cost, and as random.
    return secrets.token_hex(16)


def request_edge_middleware(app: ASGIApp, *, metrics: RequestMetrics) -> ASGIApp:
    """Wrap the whole app: bind request_id for the request's lifetime and echo it, count
    and time the request, and log one line when done."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_from(scope["headers"])
        header = (REQUEST_ID_HEADER, request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        bound = bind_contextvars(request_id=request_id)
        try:
            await app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            metrics.observe(
                route=scope.get("path_template"),
                method=scope["method"],
                status=status,
                seconds=seconds,
            )
            # The level check first: building the line's arguments is most of its cost.
            if _ACCESS_LOGGER.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                )
            reset_contextvars(**bound)

    return middleware
