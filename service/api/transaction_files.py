"""The edge of transaction import and export: media types, refusals and their OpenAPI text.

Parsing itself is `service.portfolio.import_format` (pure); this module turns its answers
and refusals into problems (400 naming line and field, 413 past `MAX_ROWS`, 415 for another
media type) and documents the request bodies, which a handler reading raw bytes cannot.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from litestar import MediaType, Request
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from service.api.problems import FieldError, ProblemException
from service.portfolio.import_format import (
    CSV_COLUMNS,
    MAX_ROWS,
    ImportRefused,
    ImportRow,
    TooManyRows,
    parse_csv,
    parse_ghostfolio,
)
from service.portfolio.recording import TransactionRejected
from service.portfolio.schemas import TransactionOut

CSV_MEDIA_TYPE = "text/csv"
ACCEPTED = f"{CSV_MEDIA_TYPE}, {MediaType.JSON}"


async def parse_import(request: Request[Any, Any, Any]) -> list[ImportRow]:
    """The rows of the request's body, by its media type; a problem when it cannot be
    imported."""
    media_type = request.content_type[0].lower()
    if media_type not in {CSV_MEDIA_TYPE, MediaType.JSON}:
        raise ProblemException(
            status=415,
            detail=f"send {CSV_MEDIA_TYPE} or {MediaType.JSON} (a Ghostfolio export), "
            f"not {media_type or 'no Content-Type'}",
            headers={"Accept-Post": ACCEPTED},
        )
    body = await request.body()
    try:
        if media_type == CSV_MEDIA_TYPE:
            return await asyncio.to_thread(parse_csv, body.decode("utf-8"))
        return await asyncio.to_thread(parse_ghostfolio, body)
    except UnicodeDecodeError as exc:
        raise ProblemException(
            status=400,
            detail=f"the file is not UTF-8 (byte {exc.start}); save it as UTF-8",
            errors=[FieldError(field="body", message="not UTF-8")],
        ) from None
    except TooManyRows as exc:
        raise ProblemException(
            status=413, detail=f"{exc}: import at most {MAX_ROWS:,} rows at a time"
        ) from None
    except ImportRefused as exc:
        raise ProblemException(
            status=400,
            detail=str(exc),
            errors=[FieldError(field=error.path, message=error.message) for error in exc.errors],
        ) from None


def refused_row(exc: TransactionRejected, rows: list[ImportRow]) -> ProblemException:
    """The problem for rows that cannot be recorded, naming the row (and field) at fault."""
    if exc.index is None:
        detail = f"the import would make a recorded transaction impossible: {exc}"
        return ProblemException(status=exc.status, detail=detail)
    location = rows[exc.index].location
    field = f"{location}.{exc.field}" if exc.field else location
    return ProblemException(
        status=exc.status,
        detail=f"{location}: {exc}",
        errors=[FieldError(field=field, message=str(exc))],
    )


def _nullable(kind: OpenAPIType, **extra: Any) -> Schema:
    return Schema(type=[kind, OpenAPIType.NULL], **extra)


_ACTIVITY = Schema(
    type=OpenAPIType.OBJECT,
    required=["date", "type"],
    description="A Ghostfolio activity; other keys (accountId, dataSource, id, tags) are ignored.",
    properties={
        "date": Schema(type=OpenAPIType.STRING, examples=["2024-01-02T00:00:00.000Z"]),
        "type": Schema(
            type=OpenAPIType.STRING,
            description="BUY, SELL, DIVIDEND, FEE (any case); DEPOSIT and WITHDRAWAL too. "
            "INTEREST and LIABILITY are refused.",
        ),
        "symbol": _nullable(OpenAPIType.STRING),
        "quantity": _nullable(OpenAPIType.NUMBER),
        "unitPrice": _nullable(OpenAPIType.NUMBER),
        "fee": _nullable(OpenAPIType.NUMBER),
        "currency": _nullable(OpenAPIType.STRING),
        "comment": _nullable(OpenAPIType.STRING),
        "dataSource": _nullable(OpenAPIType.STRING),
    },
)
_IMPORT_BODY = RequestBody(
    required=True,
    description="A CSV file, or a Ghostfolio export. docs/API.md describes both.",
    content={
        CSV_MEDIA_TYPE: OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.STRING,
                description=f"A header row ({','.join(CSV_COLUMNS)}, any order and case, or "
                "Ghostfolio's names), then one transaction per row.",
                examples=[f"{','.join(CSV_COLUMNS)}\n2024-01-02,DEPOSIT,,,,1000,0,USD,\n"],
            )
        ),
        MediaType.JSON: OpenAPIMediaType(
            schema=Schema(
                type=OpenAPIType.OBJECT,
                required=["activities"],
                properties={
                    "activities": Schema(
                        type=OpenAPIType.ARRAY, min_items=1, max_items=MAX_ROWS, items=_ACTIVITY
                    )
                },
            )
        ),
    },
)


@dataclass
class ImportOperation(Operation):
    """The import operation, with the request bodies it reads itself."""

    def __post_init__(self) -> None:
        self.request_body = _IMPORT_BODY


IMPORT_OPERATION = ImportOperation
TRANSACTIONS_RESPONSES = {
    200: ResponseSpec(
        list[TransactionOut],
        description="The transactions in the order they apply; with `format=csv`, the import "
        "format as `text/csv`.",
        generate_examples=False,
    )
}
