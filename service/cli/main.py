"""`findash`: the operator's command line.

Task commands are HTTP clients of the API (FINDASH_API_URL, FINDASH_API_KEY);
administration commands (`users …`) talk to Postgres directly (DATABASE_URL). Values
missing from the environment are read from `.dev/env`, which `just dev` writes.
Exit codes: 0 success, 1 the task failed or was cancelled, 2 the API refused or is
unreachable.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, cast
from urllib.parse import urlencode

import aiohttp
import asyncpg
import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.cli.portfolios import portfolios_group
from service.cli.schedule import schedule_group
from service.core import users
from service.core.dev_env import DEV_ENV_FILE, read_env_file
from service.core.settings import Settings

EXIT_TASK_FAILED = 1
EXIT_REFUSED = 2
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}
console = Console()
errors = Console(stderr=True)


def cli_environment() -> dict[str, str]:
    """The process environment laid over `.dev/env` (the environment wins)."""
    return {**read_env_file(DEV_ENV_FILE), **os.environ}


class ApiClient:
    """A small client of the findash API."""

    def __init__(self, *, base_url: str, api_key: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send a request; return (status, decoded JSON body)."""
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session,
            session.request(method, f"{self.base_url}{path}", json=body) as response,
        ):
            text = await response.text()
            return response.status, json.loads(text) if text else None

    async def call_raw(
        self, method: str, path: str, *, data: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes, str]:
        """Send a request with a raw body; return (status, body bytes, its media type)."""
        timeout = aiohttp.ClientTimeout(total=120)
        headers = {"Content-Type": content_type} if content_type else {}
        async with (
            aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session,
            session.request(
                method, f"{self.base_url}{path}", data=data, headers=headers
            ) as response,
        ):
            return response.status, await response.read(), response.content_type

    async def follow(self, task_id: str, on_status: Callable[[dict[str, Any]], None]) -> None:
        """Read the task's server-sent events until it ends."""
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        url = f"{self.base_url}/api/v1/tasks/{task_id}/events"
        async with (
            aiohttp.ClientSession(timeout=timeout, headers=self.headers) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                _refuse(response.status, json.loads(await response.text() or "null"))
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    status = json.loads(line[5:].strip())
                    on_status(status)
                    if status["state"] in TERMINAL:
                        return


def _refuse(status: int, body: Any) -> NoReturn:
    detail = body.get("detail") if isinstance(body, dict) else body
    errors.print(f"[red]API answered {status}[/red]: {detail}")
    if isinstance(body, dict):
        for item in body.get("errors") or []:
            errors.print(f"  {item.get('field')}: {item.get('message')}")
    sys.exit(EXIT_REFUSED)


def _run(coroutine: Awaitable[Any]) -> Any:
    try:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    except aiohttp.ClientError as exc:
        errors.print(f"[red]cannot reach the API[/red]: {exc}")
        sys.exit(EXIT_REFUSED)


@click.group()
@click.option("--api-url", envvar="FINDASH_API_URL", default=None, help="API base URL.")
@click.option("--api-key", envvar="FINDASH_API_KEY", default=None, help="Bearer API key.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def main(ctx: click.Context, api_url: str | None, api_key: str | None, as_json: bool) -> None:
    """findash: submit and follow background tasks, and administer users."""
    environment = cli_environment()
    ctx.obj = {
        "api_url": api_url or environment.get("FINDASH_API_URL", "http://127.0.0.1:8000"),
        "api_key": api_key or environment.get("FINDASH_API_KEY", ""),
        "json": as_json,
        "environment": environment,
        "request": functools.partial(_request, ctx),
        "request_raw": functools.partial(_request_raw, ctx),
        "print": functools.partial(_print, ctx),
    }


def _client(ctx: click.Context) -> ApiClient:
    if not ctx.obj["api_key"]:
        errors.print("[red]no API key[/red]: set FINDASH_API_KEY (or run `just dev`)")
        sys.exit(EXIT_REFUSED)
    return ApiClient(base_url=ctx.obj["api_url"], api_key=ctx.obj["api_key"])


def _request(ctx: click.Context, method: str, path: str, body: Any = None) -> Any:
    """One API call; a refusal exits 2 with the problem."""
    status, answer = _run(_client(ctx).call(method, path, body))
    if not 200 <= status < 300:
        _refuse(status, answer)
    return answer


def _request_raw(
    ctx: click.Context,
    method: str,
    path: str,
    data: bytes | None = None,
    content_type: str | None = None,
) -> bytes:
    """One API call with a raw body and answer (files); a refusal exits 2 with the problem."""
    call = _client(ctx).call_raw(method, path, data=data, content_type=content_type)
    status, answer, media_type = cast("tuple[int, bytes, str]", _run(call))
    if not 200 <= status < 300:
        _refuse(status, json.loads(answer) if media_type.endswith("json") and answer else answer)
    return answer


def _print(ctx: click.Context, value: Any) -> None:
    if ctx.obj["json"]:
        click.echo(json.dumps(value, indent=2, default=str))
    else:
        console.print_json(json.dumps(value, default=str))


def _submit(ctx: click.Context, path: str, body: dict[str, Any], wait: bool) -> None:
    client = _client(ctx)
    status, answer = _run(client.call("POST", f"/api/v1/tasks/{path}", body))
    if status not in (200, 202):
        _refuse(status, answer)
    if not wait:
        _print(ctx, answer)
        return
    final = _wait(ctx, client, answer["task_id"])
    _print(ctx, final)
    if final["state"] != "SUCCESS":
        sys.exit(EXIT_TASK_FAILED)


def _wait(ctx: click.Context, client: ApiClient, task_id: str) -> dict[str, Any]:
    last: dict[str, Any] = {}
    if ctx.obj["json"]:
        _run(client.follow(task_id, last.update))
        return last
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[message]}"),
        TimeElapsedColumn(),
        console=errors,
    ) as bar:
        row = bar.add_task(task_id[:8], total=None, message="PENDING")

        def show(status: dict[str, Any]) -> None:
            last.update(status)
            progress = status.get("progress") or {}
            bar.update(
                row,
                total=progress.get("total"),
                completed=progress.get("current", 0),
                message=f"{status['state']} {progress.get('message', '')}".strip(),
            )

        _run(client.follow(task_id, show))
    return last


wait_option = click.option("--wait", is_flag=True, help="Follow the task until it ends.")


@main.command("fetch-market-data")
@click.option("-s", "--symbol", "symbols", multiple=True, required=True, help="Repeatable.")
@click.option("--period", type=click.Choice(["1mo", "3mo", "6mo", "1y", "2y", "5y", "max"]))
@click.option("--start", help="YYYY-MM-DD")
@click.option("--end", help="YYYY-MM-DD")
@wait_option
@click.pass_context
def fetch_market_data(
    ctx: click.Context,
    symbols: tuple[str, ...],
    period: str | None,
    start: str | None,
    end: str | None,
    wait: bool,
) -> None:
    """Fetch daily history for symbols."""
    body: dict[str, Any] = {"symbols": list(symbols)}
    body.update({k: v for k, v in {"period": period, "start": start, "end": end}.items() if v})
    _submit(ctx, "market-data", body, wait)


@main.command("update-prices")
@click.option("-p", "--portfolio", "portfolios", type=int, multiple=True, help="Repeatable.")
@click.option("-s", "--symbol", "symbols", multiple=True, help="Repeatable.")
@wait_option
@click.pass_context
def update_prices(
    ctx: click.Context, portfolios: tuple[int, ...], symbols: tuple[str, ...], wait: bool
) -> None:
    """Refresh latest prices (default: every asset in your portfolios)."""
    body: dict[str, Any] = {}
    if portfolios:
        body["portfolio_ids"] = list(portfolios)
    if symbols:
        body["symbols"] = list(symbols)
    _submit(ctx, "portfolio-prices", body, wait)


@main.command("asset-info")
@click.argument("symbol")
@wait_option
@click.pass_context
def asset_info(ctx: click.Context, symbol: str, wait: bool) -> None:
    """Fetch one asset's reference data."""
    _submit(ctx, "asset-info", {"symbol": symbol}, wait)


@main.command("calculate-performance")
@click.option("-u", "--user", "user_id", type=int, help="Another user's id (admin keys only).")
@click.option("-p", "--portfolio", "portfolio_id", type=int, help="One portfolio (default: all).")
@click.option("-d", "--days", type=int, default=30, show_default=True)
@wait_option
@click.pass_context
def calculate_performance(
    ctx: click.Context, user_id: int | None, portfolio_id: int | None, days: int, wait: bool
) -> None:
    """Calculate performance metrics."""
    body: dict[str, Any] = {"days": days}
    if user_id is not None:
        body["user_id"] = user_id
    if portfolio_id is not None:
        body["portfolio_id"] = portfolio_id
    _submit(ctx, "portfolio-performance", body, wait)


@main.command("snapshot")
@click.option("-p", "--portfolio", "portfolios", type=int, multiple=True, help="Repeatable.")
@click.option("--date", "on_date", help="YYYY-MM-DD (default: the last trading day)")
@click.option("--start", help="Backfill from YYYY-MM-DD")
@click.option("--end", help="Backfill to YYYY-MM-DD")
@wait_option
@click.pass_context
def snapshot(
    ctx: click.Context,
    portfolios: tuple[int, ...],
    on_date: str | None,
    start: str | None,
    end: str | None,
    wait: bool,
) -> None:
    """Create (or backfill) portfolio snapshots."""
    body: dict[str, Any] = {
        k: v for k, v in {"date": on_date, "start": start, "end": end}.items() if v
    }
    if portfolios:
        body["portfolio_ids"] = list(portfolios)
    _submit(ctx, "portfolio-snapshot", body, wait)


@main.command("report")
@click.option("-p", "--portfolio", "portfolio_id", type=int, required=True)
@click.option("-d", "--days", type=int, default=365, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["html", "json"]), default="html")
@wait_option
@click.pass_context
def report(ctx: click.Context, portfolio_id: int, days: int, fmt: str, wait: bool) -> None:
    """Generate a portfolio report."""
    _submit(
        ctx, "portfolio-report", {"portfolio_id": portfolio_id, "days": days, "format": fmt}, wait
    )


@main.command("status")
@click.argument("task_id")
@wait_option
@click.pass_context
def status(ctx: click.Context, task_id: str, wait: bool) -> None:
    """Show a task's status (exit 1 if it failed); an admin key reads any task, the
    scheduler's included."""
    client = _client(ctx)
    code, answer = _run(client.call("GET", f"/api/v1/tasks/status/{task_id}"))
    if code != 200:
        _refuse(code, answer)
    if wait and answer["state"] not in TERMINAL:
        answer = _wait(ctx, client, task_id)
    _print(ctx, answer)
    if answer["state"] in {"FAILURE", "REVOKED"}:
        sys.exit(EXIT_TASK_FAILED)


@main.command("cancel")
@click.argument("task_id")
@click.pass_context
def cancel(ctx: click.Context, task_id: str) -> None:
    """Cancel a queued or running task."""
    code, answer = _run(_client(ctx).call("DELETE", f"/api/v1/tasks/cancel/{task_id}"))
    if code != 202:
        _refuse(code, answer)
    _print(ctx, answer)


def _get(ctx: click.Context, path: str, **query: Any) -> Any:
    """GET `path` (with the non-empty `query` values); exit 2 unless the API answers 200."""
    params = urlencode({key: value for key, value in query.items() if value})
    code, answer = _run(_client(ctx).call("GET", f"{path}?{params}" if params else path))
    if code != 200:
        _refuse(code, answer)
    return answer


def _task_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table("task id", "name", "state", "progress", "submitted")
    for task in tasks:
        progress = task.get("progress") or {}
        done = f"{progress.get('current')}/{progress.get('total')}" if progress else ""
        table.add_row(task["task_id"], task["name"], task["state"], done, task["submitted_at"])
    return table


@main.command("list-active")
@click.pass_context
def list_active(ctx: click.Context) -> None:
    """List your unfinished tasks."""
    answer = _get(ctx, "/api/v1/tasks/active")
    if ctx.obj["json"]:
        _print(ctx, answer)
    else:
        console.print(_task_table(answer))


@main.command("history")
@click.option("--state")
@click.option("--name")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--cursor")
@click.option(
    "--owner",
    type=click.Choice(["system"]),
    help="system: the tasks the scheduler sent (admin key).",
)
@click.pass_context
def history(
    ctx: click.Context,
    state: str | None,
    name: str | None,
    limit: int,
    cursor: str | None,
    owner: str | None,
) -> None:
    """Your task history (or the system's), newest first."""
    answer = _get(
        ctx, "/api/v1/tasks", state=state, name=name, limit=limit, cursor=cursor, owner=owner
    )
    if ctx.obj["json"]:
        _print(ctx, answer)
    else:
        console.print(_task_table(answer["tasks"]))
        if answer.get("next_cursor"):
            console.print(f"more: --cursor {answer['next_cursor']}")


@main.command("worker-stats")
@click.pass_context
def worker_stats(ctx: click.Context) -> None:
    """Show Celery workers (admin key)."""
    answer = _get(ctx, "/api/v1/tasks/workers")
    if ctx.obj["json"]:
        _print(ctx, answer)
        return
    table = Table("hostname", "pool", "concurrency", "active", "processed", "queues", "heartbeat")
    for worker in answer:
        age = worker["heartbeat_age_seconds"]
        table.add_row(
            worker["hostname"],
            str(worker["pool"]),
            str(worker["concurrency"]),
            str(worker["active"]),
            str(worker["processed"]),
            ",".join(worker["queues"]),
            "-" if age is None else f"{age:.1f}s ago",
        )
    console.print(table)


@main.group("users")
def users_group() -> None:
    """Create users and manage their API keys (talks to DATABASE_URL)."""


def _with_database(
    ctx: click.Context, action: Callable[[asyncpg.Connection], Awaitable[Any]]
) -> Any:
    settings = Settings.from_env(ctx.obj["environment"])

    async def run() -> Any:
        connection = await asyncpg.connect(settings.database_url)
        try:
            return await action(connection)
        finally:
            await connection.close()

    return asyncio.run(run())


@users_group.command("create")
@click.option("--email", required=True)
@click.option("--admin", is_flag=True, help="Grant admin rights.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def users_create(ctx: click.Context, email: str, admin: bool, as_json: bool) -> None:
    """Create a user (or add a key to an existing one) and print the new API key once."""
    issued: users.IssuedKey = _with_database(
        ctx, lambda db: users.create_user(db, email=email, is_admin=admin)
    )
    if as_json or ctx.obj["json"]:
        click.echo(
            json.dumps(
                {"user_id": issued.user_id, "key_id": issued.key_id, "api_key": issued.api_key}
            )
        )
    else:
        console.print(f"user {issued.user_id}, key {issued.key_id}")
        console.print(f"API key (shown once): [bold]{issued.api_key}[/bold]")


@users_group.command("revoke-key")
@click.argument("key_id", type=int)
@click.pass_context
def users_revoke_key(ctx: click.Context, key_id: int) -> None:
    """Revoke an API key; it fails from the very next request."""
    revoked: bool = _with_database(ctx, lambda db: users.revoke_key(db, key_id=key_id))
    if not revoked:
        errors.print(f"no active key {key_id}")
        sys.exit(EXIT_REFUSED)
    console.print(f"key {key_id} revoked")


main.add_command(schedule_group)
main.add_command(portfolios_group)


if __name__ == "__main__":
    main()
