"""`/api/v1/portfolios` and `/api/v1/reports`: portfolios, transactions and computed results.

Everything is scoped to the API key's user: someone else's portfolio or report
answers 404 exactly like one that does not exist. Handlers only read and write;
snapshots, performance and reports are computed by the analytics tasks.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import asyncpg
from litestar import Controller, MediaType, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import FromQuery, JSONBody, Parameter, PathParameter

from service.api.holdings_reads import holdings_response
from service.api.openapi_responses import raises, with_alternative_content
from service.api.polled_reads import PolledQuery, polled_response
from service.api.problems import ProblemException, decode_strictly
from service.api.transaction_files import (
    CSV_MEDIA_TYPE,
    IMPORT_OPERATION,
    TRANSACTIONS_RESPONSES,
    parse_import,
    refused_row,
)
from service.core.clock import exchange_today
from service.core.users import User
from service.portfolio import store
from service.portfolio.dividend_sync import sync_dividends
from service.portfolio.import_format import ImportRow, new_rows, to_csv
from service.portfolio.positions import (
    Transaction,
)
from service.portfolio.recording import (
    TransactionRejected,
    check_ledger,
    record_transactions,
    with_stored_currencies,
)
from service.portfolio.schemas import (
    HoldingsOut,
    ImportResult,
    PortfolioCreate,
    PortfolioOut,
    PortfolioUpdate,
    SnapshotOut,
    TransactionCreate,
    TransactionOut,
    number,
)

MAX_SNAPSHOT_ROWS = 20_000
_SNAPSHOT_VALUES = store.SNAPSHOT_VALUE_COLUMNS
_SNAPSHOT_RANGE = """
    FROM portfolio_snapshots
    WHERE portfolio_id = $1 AND ($2::date IS NULL OR date >= $2)
      AND ($3::date IS NULL OR date <= $3)
    ORDER BY date LIMIT $4
"""
# Whether the caller owns the portfolio, and the version (polled_reads.py) of the range: the
# transactions that wrote the portfolio's snapshots (migrations/0013) with the range's bounds.
SNAPSHOTS_VERSION = """
    SELECT EXISTS (SELECT 1 FROM portfolios WHERE id = $1 AND owner_id = $5) AS owned,
           (SELECT md5(concat_ws('|', $1::text, coalesce($2::date::text, ''),
                                 coalesce($3::date::text, ''), $4::int::text,
                                 coalesce(string_agg(xid::text, ',' ORDER BY xid), '')))
            FROM snapshot_writes WHERE portfolio_id = $1) AS version
"""


def _snapshots_body(*, holdings: bool) -> str:
    fields = ["'date', date", *(f"'{c}', {c}" for c in _SNAPSHOT_VALUES)]
    fields.append("'stale_prices', stale_prices")
    if holdings:
        fields.append("'holdings', holdings")
    return f"""
        SELECT coalesce(json_agg(json_build_object({", ".join(fields)}) ORDER BY date), '[]')::text
        FROM (SELECT date, {", ".join(_SNAPSHOT_VALUES)}, stale_prices
                     {", holdings" if holdings else ""}
              {_SNAPSHOT_RANGE}) s
    """  # noqa: S608 - column names are constants of this module


SNAPSHOTS_VALUES = _snapshots_body(holdings=False)
SNAPSHOTS_WITH_HOLDINGS = _snapshots_body(holdings=True)
SNAPSHOTS = PolledQuery(
    kind="snapshots", version_sql=SNAPSHOTS_VERSION, body_sql=SNAPSHOTS_VALUES, exists="owned"
)
SNAPSHOTS_HOLDINGS = PolledQuery(
    kind="snapshots-h",
    version_sql=SNAPSHOTS_VERSION,
    body_sql=SNAPSHOTS_WITH_HOLDINGS,
    exists="owned",
)
SNAPSHOT_RESPONSES = {
    200: ResponseSpec(
        list[SnapshotOut],
        description="Snapshots, oldest first; `holdings` only with `holdings=true`. Carries "
        "`ETag` and `Cache-Control: private, no-cache`.",
        generate_examples=False,
    ),
    304: ResponseSpec(
        None,
        description="`If-None-Match` named the current ETag: no snapshot in the range changed.",
    ),
}
HOLDINGS_RESPONSES = {
    200: ResponseSpec(
        HoldingsOut,
        description="The positions, cash and totals. Carries `ETag` and "
        "`Cache-Control: private, no-cache`.",
        generate_examples=False,
    ),
    304: ResponseSpec(
        None,
        description="`If-None-Match` named the current ETag: nothing the holdings are "
        "computed from changed, and no price became stale.",
    ),
}


# Ids are bigint, bounded at 2**53 - 1: every id below it is exact as a JSON (double) number,
# so a browser client holds it, and a larger one never reaches Postgres.
PathId = Annotated[int, PathParameter(ge=1, le=2**53 - 1)]


def _not_found(portfolio_id: int) -> ProblemException:
    return ProblemException(status=404, detail=f"no portfolio {portfolio_id}")


def _portfolio_out(row: asyncpg.Record) -> PortfolioOut:
    return PortfolioOut(
        id=row["id"],
        name=row["name"],
        base_currency=row["base_currency"],
        created_at=row["created_at"],
        auto_dividends=row["auto_dividends"],
    )


def _transaction_out(tx: Transaction) -> TransactionOut:
    return TransactionOut(
        id=tx.id,
        type=tx.type,
        date=tx.date,
        symbol=tx.symbol,
        quantity=number(tx.quantity),
        price=number(tx.price),
        amount=number(tx.amount),
        fee=float(tx.fee),
        currency=tx.currency,
        fx_rate=number(tx.fx_rate),
        note=tx.note,
        generated=tx.generated_ex_date is not None,
    )


async def _owned(
    connection: asyncpg.Connection, portfolio_id: int, user: User, *, lock: bool = False
) -> asyncpg.Record:
    row = await store.get_portfolio(
        connection, portfolio_id=portfolio_id, owner_id=user.id, lock=lock
    )
    if row is None:
        raise _not_found(portfolio_id)
    return row


async def _follow_dividends(
    request: Request[User, int, State], connection: asyncpg.Connection, portfolio: asyncpg.Record
) -> None:
    """Bring the generated dividends of an `auto_dividends` portfolio up to date with a
    transaction change, in the same database transaction, and refuse (422) a history the
    change makes impossible (a sale before an ex-date can remove a dividend later cash
    relied on)."""
    if portfolio["auto_dividends"]:
        await sync_dividends(
            connection,
            portfolio_id=portfolio["id"],
            today=exchange_today(request.app.state.clock),
        )
        try:
            await check_ledger(
                connection, portfolio_id=portfolio["id"], base_currency=portfolio["base_currency"]
            )
        except TransactionRejected as exc:
            raise rejected(exc) from None


def rejected(exc: TransactionRejected) -> ProblemException:
    """The problem a refused transaction answers with (the field is named in the detail)."""
    return ProblemException(status=exc.status, detail=exc.detail)


class PortfolioController(Controller):
    """The caller's portfolios and their transactions, holdings and computed results."""

    path = "/portfolios"
    tags = ["portfolios"]

    @post("/", status_code=201, summary="Create a portfolio", opt=raises(409))
    async def create(
        self, request: Request[User, int, State], data: JSONBody[PortfolioCreate]
    ) -> PortfolioOut:
        """A new, empty portfolio; 409 if the caller already has one by that name."""
        data = decode_strictly(await request.body(), PortfolioCreate)
        async with request.app.state.pool.acquire() as connection:
            row = await store.create_portfolio(
                connection,
                owner_id=request.user.id,
                name=data.name,
                base_currency=data.base_currency,
                auto_dividends=data.auto_dividends,
            )
        if row is None:
            raise ProblemException(status=409, detail=f"a portfolio named {data.name!r} exists")
        return _portfolio_out(row)

    @get("/", summary="The caller's portfolios")
    async def list_all(self, request: Request[User, int, State]) -> list[PortfolioOut]:
        """Every portfolio of the caller, oldest first."""
        async with request.app.state.pool.acquire() as connection:
            rows = await store.list_portfolios(connection, owner_id=request.user.id)
        return [_portfolio_out(row) for row in rows]

    @get("/{portfolio_id:int}", summary="One portfolio")
    async def get_one(
        self, request: Request[User, int, State], portfolio_id: PathId
    ) -> PortfolioOut:
        """The portfolio; 404 if it is not the caller's."""
        async with request.app.state.pool.acquire() as connection:
            return _portfolio_out(await _owned(connection, portfolio_id, request.user))

    @patch(
        "/{portfolio_id:int}",
        summary="Change a portfolio's settings",
        opt=raises(409),
    )
    async def update(
        self,
        request: Request[User, int, State],
        portfolio_id: PathId,
        data: JSONBody[PortfolioUpdate],
    ) -> PortfolioOut:
        """Switch `auto_dividends`: on generates the stored dividends of held symbols as
        DIVIDEND transactions at once, off deletes the generated ones (docs/API.md,
        Dividends). 409 if removing them leaves an impossible history (a later withdrawal
        spent that cash)."""
        data = decode_strictly(await request.body(), PortfolioUpdate)
        today = exchange_today(request.app.state.clock)
        async with request.app.state.pool.acquire() as connection, connection.transaction():
            await _owned(connection, portfolio_id, request.user, lock=True)
            row = await store.set_auto_dividends(
                connection, portfolio_id=portfolio_id, auto_dividends=data.auto_dividends
            )
            await sync_dividends(connection, portfolio_id=portfolio_id, today=today)
            try:
                await check_ledger(
                    connection, portfolio_id=portfolio_id, base_currency=row["base_currency"]
                )
            except TransactionRejected as exc:
                raise ProblemException(status=409, detail=exc.detail) from None
        return _portfolio_out(row)

    @delete("/{portfolio_id:int}", status_code=204, summary="Delete a portfolio")
    async def remove(self, request: Request[User, int, State], portfolio_id: PathId) -> None:
        """Delete the portfolio with its transactions, snapshots, results and reports."""
        async with request.app.state.pool.acquire() as connection:
            deleted = await store.delete_portfolio(
                connection, portfolio_id=portfolio_id, owner_id=request.user.id
            )
        if not deleted:
            raise _not_found(portfolio_id)

    @post(
        "/{portfolio_id:int}/transactions",
        status_code=201,
        summary="Record a transaction",
        opt=raises(422),
    )
    async def add_transaction(
        self,
        request: Request[User, int, State],
        portfolio_id: PathId,
        data: JSONBody[TransactionCreate],
    ) -> TransactionOut:
        """Record a transaction; 422 if it would oversell or overdraw, or if it is in a
        foreign currency without `fx_rate` and no rate is stored for its date. Priced in the
        asset's currency unless `currency` says otherwise; the rate used is recorded."""
        async with request.app.state.pool.acquire() as connection, connection.transaction():
            portfolio = await _owned(connection, portfolio_id, request.user, lock=True)
            try:
                (recorded,) = await record_transactions(
                    connection,
                    portfolio_id=portfolio_id,
                    base_currency=portfolio["base_currency"],
                    transactions=[data],
                )
            except TransactionRejected as exc:
                raise rejected(exc) from None
            await _follow_dividends(request, connection, portfolio)
        return _transaction_out(recorded)

    @post(
        "/{portfolio_id:int}/transactions/import",
        status_code=200,
        summary="Import transactions from CSV or a Ghostfolio export",
        opt=raises(400, 413, 415, 422),
        operation_class=IMPORT_OPERATION,
    )
    async def import_transactions(
        self, request: Request[User, int, State], portfolio_id: PathId
    ) -> ImportResult:
        """Record every row of the file, or none: a bad row is a 400 naming its line (or
        `activities[i]`) and field, a row that would oversell or overdraw a 422 naming it.
        Rows already recorded (same content, counted per occurrence) are skipped."""
        rows = await parse_import(request)
        async with request.app.state.pool.acquire() as connection, connection.transaction():
            portfolio = await _owned(connection, portfolio_id, request.user, lock=True)
            base = portfolio["base_currency"]
            stored_as = await with_stored_currencies(
                connection, base_currency=base, transactions=[row.transaction for row in rows]
            )
            rows = [
                ImportRow(location=row.location, transaction=tx)
                for row, tx in zip(rows, stored_as, strict=True)
            ]
            existing = await store.list_transactions(connection, portfolio_id)
            fresh, duplicates = new_rows(rows, existing)
            try:
                await record_transactions(
                    connection,
                    portfolio_id=portfolio_id,
                    base_currency=base,
                    transactions=[row.transaction for row in fresh],
                )
            except TransactionRejected as exc:
                raise refused_row(exc, fresh) from None
            await _follow_dividends(request, connection, portfolio)
        return ImportResult(imported=len(fresh), duplicates=duplicates)

    @get(
        "/{portfolio_id:int}/transactions",
        summary="The portfolio's transactions (JSON or CSV)",
        responses=TRANSACTIONS_RESPONSES,
        operation_class=with_alternative_content(
            200, {CSV_MEDIA_TYPE: Schema(type=OpenAPIType.STRING)}
        ),
    )
    async def transactions(
        self,
        request: Request[User, int, State],
        portfolio_id: PathId,
        format: Annotated[
            Literal["json", "csv"],
            Parameter(
                description="`csv`: the import format (`text/csv`), which imports back exactly.",
            ),
        ] = "json",
    ) -> Response[Any]:
        """Transactions in the order they apply (date, then recorded order)."""
        async with request.app.state.pool.acquire() as connection:
            await _owned(connection, portfolio_id, request.user)
            rows = await store.list_transactions(connection, portfolio_id)
        if format == "csv":
            return Response(
                content=to_csv(rows).encode(),
                media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
                headers={
                    "Content-Disposition": f'attachment; filename="portfolio-{portfolio_id}.csv"'
                },
            )
        return Response(content=[_transaction_out(tx) for tx in rows])

    @delete(
        "/{portfolio_id:int}/transactions/{transaction_id:int}",
        status_code=204,
        summary="Delete a transaction",
        opt=raises(409, 422),
    )
    async def remove_transaction(
        self,
        request: Request[User, int, State],
        portfolio_id: PathId,
        transaction_id: PathId,
    ) -> None:
        """Delete a transaction; 422 if a later one would become impossible without it, 409
        for a generated dividend (record the dividend yourself to replace it, or switch
        `auto_dividends` off)."""
        async with request.app.state.pool.acquire() as connection, connection.transaction():
            portfolio = await _owned(connection, portfolio_id, request.user, lock=True)
            ex_date = await connection.fetchval(
                "SELECT generated_ex_date FROM transactions WHERE id = $1 AND portfolio_id = $2",
                transaction_id,
                portfolio_id,
            )
            if ex_date is not None:
                raise ProblemException(
                    status=409,
                    detail=f"transaction {transaction_id} was generated from the dividend with "
                    f"ex-date {ex_date}; record that dividend yourself to replace it, or switch "
                    "auto_dividends off",
                )
            day = await store.delete_transaction(
                connection, portfolio_id=portfolio_id, transaction_id=transaction_id
            )
            if day is None:
                raise ProblemException(status=404, detail=f"no transaction {transaction_id}")
            await _follow_dividends(request, connection, portfolio)
            try:
                await check_ledger(
                    connection,
                    portfolio_id=portfolio_id,
                    base_currency=portfolio["base_currency"],
                )
            except TransactionRejected as exc:
                raise rejected(exc) from None
            await store.invalidate_snapshots(connection, portfolio_id=portfolio_id, since=day)

    @get(
        "/{portfolio_id:int}/holdings",
        summary="Current positions and cash",
        responses=HOLDINGS_RESPONSES,
        opt=raises(409),
    )
    async def holdings(
        self,
        request: Request[User, int, State],
        portfolio_id: PathId,
        as_of: FromQuery[dt.date | None] = None,
    ) -> Response[bytes]:
        """Positions at `as_of` (default today) valued at the newest price: the latest quote
        when it traded after the last close, else the last close; each price says where it
        came from and whether it is stale. Send the `ETag` back as `If-None-Match` to get 304
        while nothing it was computed from changed. 409 if a split stored since makes the
        recorded transactions impossible."""
        today = exchange_today(request.app.state.clock)
        async with request.app.state.pool.acquire() as connection:
            response = await holdings_response(
                connection,
                cache=request.app.state.kept_holdings,
                portfolio_id=portfolio_id,
                owner_id=request.user.id,
                day=as_of or today,
                today=today,
                now=request.app.state.clock(),
                if_none_match=request.headers.get("if-none-match"),
            )
        if response is None:
            raise _not_found(portfolio_id)
        return response

    @get(
        "/{portfolio_id:int}/snapshots",
        summary="Stored daily snapshots",
        responses=SNAPSHOT_RESPONSES,
        opt=raises(422),
    )
    async def snapshots(
        self,
        request: Request[User, int, State],
        portfolio_id: PathId,
        start: FromQuery[dt.date | None] = None,
        end: FromQuery[dt.date | None] = None,
        holdings: Annotated[
            bool,
            Parameter(
                query="holdings",
                description="Include each day's positions (`holdings`). Default false: the "
                "daily values a chart needs, about a third of the bytes.",
            ),
        ] = False,
    ) -> Response[bytes]:
        """Snapshots in [start, end] (both optional), oldest first, each day's positions only
        with `holdings=true`. Send the `ETag` back as `If-None-Match` to get 304 while no
        snapshot in the range changed."""
        if start is not None and end is not None and start > end:
            raise ProblemException(status=422, detail="invalid end: must be on or after start")
        async with request.app.state.pool.acquire() as connection:
            response = await polled_response(
                connection,
                query=SNAPSHOTS_HOLDINGS if holdings else SNAPSHOTS,
                args=(portfolio_id, start, end, MAX_SNAPSHOT_ROWS, request.user.id),
                if_none_match=request.headers.get("if-none-match"),
                cache=request.app.state.bodies,
            )
        if response is None:
            raise _not_found(portfolio_id)
        return response

    @get(
        "/{portfolio_id:int}/performance",
        summary="The latest performance result",
        responses={
            204: ResponseSpec(
                None, description="Nothing computed yet: submit `portfolio-performance`."
            )
        },
    )
    async def performance(self, request: Request[User, int, State], portfolio_id: PathId) -> Any:
        """The most recently computed result; 204 (no body) until
        `calculate_portfolio_performance` has run for the portfolio."""
        async with request.app.state.pool.acquire() as connection:
            await _owned(connection, portfolio_id, request.user)
            result = await connection.fetchval(
                "SELECT result FROM portfolio_performance WHERE portfolio_id = $1 "
                "ORDER BY computed_at DESC LIMIT 1",
                portfolio_id,
            )
        if result is None:
            return Response(content=b"", status_code=204)
        return result


class ReportController(Controller):
    """Stored reports of the caller's portfolios."""

    path = "/reports"
    tags = ["portfolios"]

    @get(
        "/{report_id:int}",
        summary="A stored report (HTML or JSON, as generated)",
        media_type=MediaType.HTML,
        operation_class=with_alternative_content(200, {MediaType.JSON: Schema()}),
    )
    async def report(
        self, request: Request[User, int, State], report_id: PathId
    ) -> Response[bytes]:
        """The report body with its own media type; 404 if it is not the caller's."""
        async with request.app.state.pool.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT r.format, r.body FROM portfolio_reports r "
                "JOIN portfolios p ON p.id = r.portfolio_id WHERE r.id = $1 AND p.owner_id = $2",
                report_id,
                request.user.id,
            )
        if row is None:
            raise ProblemException(status=404, detail=f"no report {report_id}")
        media_type = MediaType.HTML if row["format"] == "html" else MediaType.JSON
        return Response(content=row["body"].encode(), media_type=media_type)
