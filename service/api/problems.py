"""RFC 9457 problem details: every error the API returns goes through here."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import asyncpg
import msgspec
import redis.exceptions
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from service.core.database import PoolExhausted
from service.core.logs import get_logger

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = get_logger(__name__)

_TITLES = {
    400: "Invalid request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Internal server error",
    501: "Not implemented",
    503: "Service unavailable",
}
# msgspec's messages end in "- at `$.symbols[0]`"; Litestar wraps body errors under "data".
_AT_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
# Messages that name their field without a path, and our own "field: message" rules.
_NAMED_FIELD = re.compile(r"(?:unknown|required) field `(?P<field>[^`]+)`")
_FIELD_PREFIX = re.compile(r"^(?P<field>[a-z_]+): (?P<message>.+)$", re.DOTALL)


_Body = TypeVar("_Body")


class FieldError(msgspec.Struct, frozen=True):
    """One invalid field: a JSON path like `symbols[0]` and what is wrong with it."""

    field: str
    message: str


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An RFC 9457 problem details body."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class ProblemException(HTTPException):
    """Raise from a handler to answer with a problem of any status and detail."""

    def __init__(
        self,
        *,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        problem_type: str | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status, headers=headers)
        self.problem_type = problem_type
        self.errors = errors


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries documenting the problem body for each of `statuses`."""
    return {
        status: ResponseSpec(
            Problem,
            description=_TITLES.get(status, "Error"),
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for status in statuses
    }


def problem_type_for(status: int) -> str:
    """A stable `type` URI for a status, documented in docs/API.md."""
    return f"https://findash.dev/problems/{status}"


def field_errors(extra: Any) -> list[FieldError]:
    """Turn Litestar's validation `extra` (msgspec messages) into named-field errors."""
    items = extra if isinstance(extra, list) else [extra] if extra else []
    errors: list[FieldError] = []
    for item in items:
        if not isinstance(item, dict):
            errors.append(FieldError(field="", message=str(item)))
            continue
        raw = str(item.get("message", ""))
        key = str(item.get("key") or "")
        match = _AT_PATH.match(raw)
        message = match["message"] if match else raw
        path = (match["path"] if match and match["path"] else "") or ""
        field = _json_path_to_field(path) if path else ""
        named = _NAMED_FIELD.search(message)
        prefixed = _FIELD_PREFIX.match(message)
        if named is not None:
            field = ".".join(p for p in (field, named["field"]) if p)
        elif prefixed is not None and not field:
            field, message = prefixed["field"], prefixed["message"]
        if not field and key and key != "data":
            field = key
        errors.append(FieldError(field=field or "body", message=message))
    return errors


def _json_path_to_field(path: str) -> str:
    return path.lstrip(".")


def problem_response(
    request: Request[Any, Any, Any],
    *,
    status: int,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    problem_type: str | None = None,
) -> Response[Problem]:
    """Build the problem+json response for `status`."""
    return Response(
        Problem(
            type=problem_type or problem_type_for(status),
            title=_TITLES.get(status, "Error"),
            status=status,
            detail=detail,
            instance=request.url.path,
            errors=errors,
        ),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def breaks_only_stated_rules(extra: Any) -> bool:
    """Whether every error in a validation `extra` is a rule the schema cannot state (a
    `"<field>: <message>"` ValueError from a Struct's `__post_init__`), not a type, format
    or constraint the OpenAPI document states."""
    items = extra if isinstance(extra, list) else [extra] if extra else []
    if not items:
        return False
    for item in items:
        raw = str(item.get("message", "")) if isinstance(item, dict) else str(item)
        match = _AT_PATH.match(raw)
        message = match["message"] if match else raw
        if _NAMED_FIELD.search(message) or not _FIELD_PREFIX.match(message):
            return False
    return True


def handle_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Problem]:
    """400 naming each invalid field when the request breaks the OpenAPI schema; 422 when it
    fits the schema but breaks a rule only the prose states (fields that go together)."""
    errors = field_errors(exc.extra)
    names = ", ".join(e.field for e in errors if e.field)
    detail = f"invalid {names}" if names else (exc.detail or "invalid request")
    status = 422 if breaks_only_stated_rules(exc.extra) else 400
    return problem_response(request, status=status, detail=detail, errors=errors or None)


def handle_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    """Any HTTPException (401, 404, 413, 503, …) as a problem."""
    status = exc.status_code
    if status == 400 and exc.extra:
        return handle_validation(request, ValidationException(detail=exc.detail, extra=exc.extra))
    detail = exc.detail or _TITLES.get(status, "Error")
    problem_type = exc.problem_type if isinstance(exc, ProblemException) else None
    errors = exc.errors if isinstance(exc, ProblemException) else None
    return problem_response(
        request,
        status=status,
        detail=detail,
        errors=errors or (field_errors(exc.extra) if exc.extra else None),
        headers=exc.headers,
        problem_type=problem_type,
    )


# Failures of Postgres or Redis themselves (down, restarting, out of connections, timing
# out): the request may succeed later, so they are 503s, never 500s.
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


def handle_dependency_down(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """503 with Retry-After when the database or Redis cannot serve the request."""
    log.warning(
        "dependency unavailable",
        path=request.url.path,
        error_type=type(exc).__name__,
        error=str(exc)[:500],
    )
    return problem_response(
        request,
        status=503,
        detail="a backing service (database or Redis) is unavailable; retry shortly",
        headers={"Retry-After": "5"},
    )


def handle_pool_exhausted(request: Request[Any, Any, Any], exc: PoolExhausted) -> Response[Problem]:
    """503 with Retry-After when every database connection stays busy past
    DB_ACQUIRE_TIMEOUT_SECONDS."""
    log.warning("database pool exhausted", path=request.url.path, error=str(exc))
    return problem_response(
        request,
        status=503,
        detail=f"the service is busy: {exc}; retry shortly",
        headers={"Retry-After": "1"},
    )


def handle_unstorable_text(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """400 for text Postgres cannot store (a NUL, a character outside UTF-8) that a schema
    pattern did not already refuse."""
    log.warning("unstorable text", path=request.url.path, error_type=type(exc).__name__)
    return problem_response(
        request, status=400, detail="the request holds text that cannot be stored (e.g. NUL)"
    )


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """Log the failure with its traceback; answer 500 without leaking internals."""
    log.exception("unhandled error", path=request.url.path, error_type=type(exc).__name__)
    return problem_response(
        request, status=HTTP_500_INTERNAL_SERVER_ERROR, detail="an unexpected error occurred"
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: handle_validation,
    HTTPException: handle_http,
    **dict.fromkeys(DEPENDENCY_ERRORS, handle_dependency_down),
    PoolExhausted: handle_pool_exhausted,
    asyncpg.exceptions.CharacterNotInRepertoireError: handle_unstorable_text,
    asyncpg.exceptions.UntranslatableCharacterError: handle_unstorable_text,
    Exception: handle_unexpected,
}


def decode_strictly(raw: bytes, type_: type[_Body]) -> _Body:
    """Decode a JSON body by msgspec's strict rules, or raise a 400 naming the field.

    Litestar converts bodies leniently (0 becomes false, "1" becomes 1); a body with a
    boolean field is decoded again with this so `{"flag": 0}` is refused as the schema says."""
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        errors = field_errors({"message": str(exc)})
        raise ProblemException(
            status=400, detail=f"Validation failed: {exc}", errors=errors
        ) from None
