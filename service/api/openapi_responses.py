"""Make the OpenAPI document describe every answer a route can give, in one place.

`DocumentedResponses` sees each route as it is registered and adds, to every operation, the
RFC 9457 problem responses (`application/problem+json`, the `Problem` schema) that the
route can produce. Most follow from the route's shape, so a new route gets them for free:

- authenticated (it declares `security`): 401, and 503 (the key check reads Postgres);
- guarded: 403;
- path parameters: 400 and 404;
- query or header parameters, or a body: 400; a body: 413 too, and 422 when its Struct
  has rules across fields (`__post_init__`) that a schema cannot state.

What only the handler knows it declares with `opt=raises(409, 429, …)`. A response the
handler spells out in `responses=` always wins. A handler returning `ServerSentEvent` is
documented as `text/event-stream`.

`state_msgspec_schemas` then replaces the schema Litestar derived for each msgspec Struct
a route reads or returns by msgspec's own: Litestar's drops constraints on list items and
optional fields and never says `additionalProperties: false`, so the document would allow
requests the API refuses.
"""

from __future__ import annotations

import typing
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Litestar
from litestar.constants import RESERVED_KWARGS
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    RequestBody,
    Schema,
)
from litestar.plugins import ReceiveRoutePlugin
from litestar.response import ServerSentEvent
from litestar.routes import BaseRoute, HTTPRoute

from service.api.problems import problem_responses

RAISES_OPT = "raises"
EVENT_STREAM = "text/event-stream"


def raises(*statuses: int) -> dict[str, tuple[int, ...]]:
    """A handler's `opt=`: problem statuses it answers beyond those its shape implies."""
    return {RAISES_OPT: statuses}


def problem_statuses(
    handler: HTTPRouteHandler, *, path_parameters: Collection[str] = ()
) -> list[int]:
    """The problem statuses `handler` can answer, inferred from its shape plus its declared
    `raises`, in ascending order."""
    statuses: set[int] = set(handler.opt.get(RAISES_OPT, ()))
    parameters = set(handler.parsed_fn_signature.parameters) - RESERVED_KWARGS
    takes_body = "data" in handler.parsed_fn_signature.parameters
    if handler.resolve_security():
        statuses |= {401, 503}
    if handler.resolve_guards():
        statuses.add(403)
    if path_parameters:
        statuses |= {400, 404}
    if parameters or takes_body:
        statuses.add(400)
    if takes_body:
        statuses.add(413)
        body = handler.parsed_fn_signature.parameters["data"].annotation
        if any(hasattr(struct, "__post_init__") for struct in _structs_in(body)):
            statuses.add(422)
    return sorted(statuses)


class SentEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One server-sent event as a client parses it; `data` is a JSON document."""

    event: str | None = None
    data: str | None = None
    id: str | None = None
    retry: int | None = None


def _streamed_success(handler: HTTPRouteHandler) -> dict[int, ResponseSpec]:
    if not handler.parsed_fn_signature.return_type.is_subclass_of(ServerSentEvent):
        return {}
    return {
        handler.status_code: ResponseSpec(
            SentEvent,
            description="Server-sent events (`text/event-stream`); each `data` line is JSON.",
            media_type=EVENT_STREAM,
            generate_examples=False,
        )
    }


def document_responses(handler: HTTPRouteHandler, *, path_parameters: Collection[str]) -> None:
    """Add `handler`'s problem and streamed responses to its `responses`, keeping its own."""
    inferred = problem_responses(*problem_statuses(handler, path_parameters=path_parameters))
    handler.responses = {**inferred, **_streamed_success(handler), **(handler.responses or {})}


class DocumentedResponses(ReceiveRoutePlugin):
    """Document every registered HTTP route's problem responses (module docstring)."""

    def receive_route(self, route: BaseRoute) -> None:
        """Complete the responses of each handler of `route`."""
        if not isinstance(route, HTTPRoute):
            return
        names = list(route.path_parameters)
        for handler in route.route_handlers:
            document_responses(handler, path_parameters=names)


@dataclass
class OptionalBodyOperation(Operation):
    """An operation whose request body may be left out (the handler documents what that
    means); Litestar marks every body required."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


def with_alternative_content(status: int, content: dict[str, Schema]) -> type[Operation]:
    """An `operation_class` documenting more media types for the `status` response, for a
    route whose body's type depends on what it serves (`content` maps type to schema)."""

    @dataclass
    class AlternativeContentOperation(Operation):
        def __post_init__(self) -> None:
            response = (self.responses or {}).get(str(status))
            if isinstance(response, OpenAPIResponse):
                response.content = {
                    **(response.content or {}),
                    **{media: OpenAPIMediaType(schema=schema) for media, schema in content.items()},
                }

    return AlternativeContentOperation


# msgspec decodes a Decimal from a JSON number or a numeric string.
_DECIMAL_STRING = {"type": "string", "format": "decimal"}
_DECIMAL = {
    "anyOf": [
        {
            **_DECIMAL_STRING,
            "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?$",
        },
        {"type": "number"},
    ]
}


@dataclass
class _JsonSchema(Schema):
    """A schema already written as JSON Schema, emitted unchanged."""

    raw: dict[str, Any] = field(default_factory=dict)

    def to_schema(self) -> dict[str, Any]:
        return self.raw


def _with_decimal_numbers(node: Any) -> Any:
    if isinstance(node, dict):
        if {k: v for k, v in node.items() if k != "default"} == _DECIMAL_STRING:
            return {**_DECIMAL, **({"default": node["default"]} if "default" in node else {})}
        return {key: _with_decimal_numbers(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_decimal_numbers(item) for item in node]
    return node


def _structs_in(annotation: Any) -> Iterator[type[msgspec.Struct]]:
    stack = [annotation]
    while stack:
        current = stack.pop()
        if isinstance(current, type) and issubclass(current, msgspec.Struct):
            yield current
        stack.extend(typing.get_args(current))


def handler_structs(app: Litestar) -> set[type[msgspec.Struct]]:
    """Every msgspec Struct a route of `app` reads as its body or answers with."""
    found: set[type[msgspec.Struct]] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            signature = handler.parsed_fn_signature
            annotations = [signature.return_type.annotation]
            if "data" in signature.parameters:
                annotations.append(signature.parameters["data"].annotation)
            annotations += [spec.data_container for spec in (handler.responses or {}).values()]
            for annotation in annotations:
                found.update(_structs_in(annotation))
    return found


def state_msgspec_schemas(app: Litestar) -> None:
    """Build `app`'s OpenAPI document with msgspec's schema for each Struct its routes use."""
    structs = sorted(handler_structs(app), key=lambda struct: struct.__qualname__)
    _, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    openapi = app.openapi_schema
    if openapi.components.schemas is None:
        openapi.components.schemas = {}
    for name, raw in components.items():
        openapi.components.schemas[name] = _JsonSchema(raw=_with_decimal_numbers(raw))
