"""Reads a dashboard polls: JSON that Postgres builds, sent as it is, with an ETag.

A year of snapshots or prices is a few hundred rows; turning each into Python objects
(numeric → float, jsonb → dict) and back into JSON cost more than everything else in the
request. Postgres builds the body with `json_agg` instead and the handler passes the bytes
through. Numbers are the stored `numeric` values (`123.450000`): the same values as before,
always with a decimal point, exact.

The ETag is an MD5 of each selected row's date and row version (`xmin`, new on every
insert or update), so it changes with any write to the range, deletions included, and is
computed without reading the rows' JSON. A matching `If-None-Match` answers 304 with no
body. A poll without `If-None-Match` reads the version and the body in one statement (one
round trip, and the ETag and the body come from the same snapshot). Responses say
`Cache-Control: private, no-cache`: only the caller's own cache keeps them, and it asks
again each time.
"""

from __future__ import annotations

from litestar import MediaType, Response

CACHE_CONTROL = "private, no-cache"


def version_and_body(version_sql: str, body_sql: str, *, exists: str) -> str:
    """One statement: the columns of `version_sql`, plus `body` from `body_sql` when the
    `exists` column is true (else NULL)."""
    return (
        f"SELECT v.*, CASE WHEN v.{exists} THEN ({body_sql}) END AS body "  # noqa: S608 - constant text
        f"FROM ({version_sql}) v"
    )


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an `If-None-Match` header names `etag` (weak comparison, RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


def make_etag(kind: str, version: str) -> str:
    """A strong entity tag for representation `kind` (shape and options) at `version`."""
    return f'"{kind}-{version}"'


def json_response(body: str, *, etag: str) -> Response[bytes]:
    """A 200 with a JSON body Postgres built, and its validators."""
    return Response(
        content=body.encode(),
        media_type=MediaType.JSON,
        headers={"ETag": etag, "Cache-Control": CACHE_CONTROL},
    )


def not_modified(*, etag: str) -> Response[bytes]:
    """A 304: the caller's copy is current."""
    return Response(
        content=b"",
        status_code=304,
        headers={"ETag": etag, "Cache-Control": CACHE_CONTROL},
    )
