"""Bearer API-key authentication for `/api/v1`, and the admin guard."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.base import DefineMiddleware
from litestar.openapi.spec import Components, SecurityScheme

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


class ApiKeyAuthenticationMiddleware(AbstractAuthenticationMiddleware):
    """Resolve `Authorization: Bearer <key>` to a `User`, or answer 401."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException(detail="missing bearer API key", headers=BEARER_CHALLENGE)
        keys: ApiKeyCache = connection.app.state.api_keys
        user = await keys.authenticate(token.strip())
        if user is None:
            raise NotAuthorizedException(
                detail="invalid or revoked API key", headers=BEARER_CHALLENGE
            )
        return AuthenticationResult(user=user, auth=user.key_id)


AUTH_MIDDLEWARE = DefineMiddleware(ApiKeyAuthenticationMiddleware)


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: the caller must hold an admin key."""
    user: User = connection.user
    if not user.is_admin:
        raise PermissionDeniedException(detail="this route needs an admin API key")
