"""Bearer API-key authentication for `/api/v1`, and the admin guard."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.base import DefineMiddleware
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

from service.api.key_cache import ApiKeyCache
from service.core.users import User

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="findash"'}
SECURITY_COMPONENTS = Components(
    security_schemes={
        "BearerApiKey": SecurityScheme(
            type="http",
            scheme="bearer",
            bearer_format="findash API key (fdk_…)",
            description="An API key from `findash users create`.",
        )
    }
)
SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"BearerApiKey": []}]


_AUTHORIZATION = b"authorization"


class ApiKeyAuthenticationMiddleware:
    """Resolve `Authorization: Bearer <key>` to a `User` (`request.user`, and the key's id
    as `request.auth`), or answer 401.

    Pure ASGI: the header is read from the scope as it came, without building the
    connection and header objects Litestar's authentication middleware makes per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in (ScopeType.HTTP, ScopeType.WEBSOCKET):
            user = await self._authenticate(scope)
            scope["user"] = user
            scope["auth"] = user.key_id
        await self.app(scope, receive, send)

    @staticmethod
    async def _authenticate(scope: Scope) -> User:
        header = next(
            (
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name.lower() == _AUTHORIZATION
            ),
            "",
        )
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException(detail="missing bearer API key", headers=BEARER_CHALLENGE)
        keys: ApiKeyCache = scope["litestar_app"].state.api_keys
        user = await keys.authenticate(token.strip())
        if user is None:
            raise NotAuthorizedException(
                detail="invalid or revoked API key", headers=BEARER_CHALLENGE
            )
        return user


AUTH_MIDDLEWARE = DefineMiddleware(ApiKeyAuthenticationMiddleware)


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the caller must hold an admin key."""
    user: User = connection.user
    if not user.is_admin:
        raise PermissionDeniedException(detail="this route needs an admin API key")
