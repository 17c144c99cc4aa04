"""`findash schedule …`: the scheduler's jobs, their next and last fires, and manual fires.

Talks to Postgres directly (DATABASE_URL), like the `users` commands: `list` reads
the ledger, with each fire's task outcome from the task registry, and plans the next
fires with the same calendar the leader uses; `run` claims a fire now, as the leader
would, and the leader (woken by NOTIFY) sends it.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import click
from rich.console import Console
from rich.table import Table

from service.core.clock import clock_from_settings
from service.core.market_closures import load_trading_calendar
from service.core.settings import Settings
from service.core.trading_calendar import EXCHANGE_TZ
from service.scheduler import Fire, Job, jobs_for, ledger, next_fires


@dataclass(frozen=True, slots=True)
class JobView:
    """What `schedule list` shows for one job."""

    job: Job
    next_fires: list[datetime]
    last_fires: list[ledger.LedgerRow]


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What a fire's task came to: its counts (e.g. requested, updated, failed), each
    failure as (what, reason), and the error of a task that failed."""

    counts: dict[str, int]
    failures: list[tuple[str, str]]
    error: str | None


def task_outcome(*, result: Any, error: dict[str, Any] | None) -> TaskOutcome:
    """Read the counts and failures out of a task's result, whatever the task.

    Counts are the result's integer fields, by name with `failed` last; `failed` may be a
    list of `{symbol, reason}` (market data), a mapping of id to reason (portfolios) or a
    count.
    """
    fields = result if isinstance(result, dict) else {}
    counts = {
        key: value
        for key, value in fields.items()
        if isinstance(value, int) and not isinstance(value, bool)
    }
    failed = fields.get("failed")
    failures: list[tuple[str, str]] = []
    if isinstance(failed, dict):
        failures = [(str(key), str(reason)) for key, reason in failed.items()]
    elif isinstance(failed, list):
        failures = [_failure(entry) for entry in failed]
    if isinstance(failed, dict | list):
        counts["failed"] = len(failures)
    # Postgres reorders jsonb keys; show the counts by name, failures last.
    counts = dict(sorted(counts.items(), key=lambda item: (item[0] == "failed", item[0])))
    message = (
        f"{error.get('type', 'Error')}: {error.get('message', '')}"
        if isinstance(error, dict)
        else None
    )
    return TaskOutcome(counts=counts, failures=failures, error=message)


def _failure(entry: Any) -> tuple[str, str]:
    if isinstance(entry, dict):
        what = next(
            (str(entry[key]) for key in ("symbol", "portfolio_id", "id") if key in entry), "?"
        )
        return what, str(entry.get("reason", ""))
    return str(entry), ""


def outcome_text(outcome: TaskOutcome, *, max_failures: int = 3, reason_width: int = 90) -> str:
    """The outcome in a few terminal lines: counts, then the first failures, then the error."""
    lines = [" · ".join(f"{key} {value}" for key, value in outcome.counts.items())]
    for what, reason in outcome.failures[:max_failures]:
        lines.append(_clip(f"✗ {what}: {reason}" if reason else f"✗ {what}", reason_width))
    if len(outcome.failures) > max_failures:
        lines.append(f"… and {len(outcome.failures) - max_failures} more failures")
    if outcome.error is not None:
        lines.append(_clip(outcome.error, reason_width))
    return "\n".join(line for line in lines if line)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _local(instant: datetime) -> str:
    return instant.astimezone(EXCHANGE_TZ).strftime("%a %Y-%m-%d %H:%M:%S %Z")


async def _connect(settings: Settings) -> asyncpg.Connection:
    connection: asyncpg.Connection = await asyncpg.connect(
        settings.database_url,
        timeout=5,
        command_timeout=10,
        server_settings={"application_name": "findash-cli schedule"},
    )
    return connection


async def _collect(
    settings: Settings, *, next_count: int, last_count: int
) -> tuple[list[JobView], dict[str, Any] | None]:
    connection = await _connect(settings)
    try:
        calendar = await load_trading_calendar(connection)
        now = clock_from_settings(settings)()
        views = [
            JobView(
                job=job,
                next_fires=next_fires(job, calendar, after=now, count=next_count),
                last_fires=await ledger.recent_fires(connection, job_id=job.id, limit=last_count),
            )
            for job in jobs_for(settings.scheduler_schedule)
        ]
        leader = await connection.fetchrow(
            "SELECT epoch, leader, acquired_at FROM scheduler_leader WHERE id = 1"
        )
        return views, None if leader is None else dict(leader)
    finally:
        await connection.close()


async def _claim_now(settings: Settings, *, job: Job, wait_seconds: float) -> tuple[Fire, str]:
    fire = Fire(scheduled_for=clock_from_settings(settings)(), job_id=job.id)
    connection = await _connect(settings)
    try:
        claimed = await ledger.claim_manual_fire(
            connection, job=job, fire=fire, claimed_by=f"cli@{socket.gethostname()}"
        )
        if not claimed:
            return fire, "already claimed"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        state = "claimed"
        while state == "claimed" and loop.time() < deadline:
            await asyncio.sleep(0.1)
            state = await connection.fetchval(
                "SELECT state FROM schedule_fires WHERE task_id = $1::uuid", fire.task_id
            )
        return fire, state
    finally:
        await connection.close()


def _settings() -> Settings:
    """Settings from the `findash` CLI's environment (which includes .dev/env), if any."""
    root = click.get_current_context().find_root().obj
    environment = root.get("environment") if isinstance(root, dict) else None
    return Settings.from_env(environment)


@click.group("schedule")
def schedule_group() -> None:
    """Inspect the scheduler's jobs and fire one by hand."""


@schedule_group.command("list")
@click.option("--next", "next_count", default=3, show_default=True, help="next fires per job")
@click.option("--last", "last_count", default=3, show_default=True, help="ledger fires per job")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def list_jobs(next_count: int, last_count: int, as_json: bool) -> None:
    """Each job with its next fires (trading-calendar aware), and its last fires from the
    ledger with their task's outcome: state, counts and failures."""
    settings = _settings()
    views, leader = asyncio.run(_collect(settings, next_count=next_count, last_count=last_count))
    root = click.get_current_context().find_root().obj
    if as_json or (isinstance(root, dict) and root.get("json")):
        click.echo(json.dumps(_listing_json(views, leader), indent=2, default=str))
        return
    console = Console(width=200)
    if leader is not None and leader["leader"]:
        console.print(
            f"leader {leader['leader']} epoch {leader['epoch']}"
            f" since {leader['acquired_at']:%Y-%m-%d %H:%M:%S %Z}"
            " (the last to win the lock; it may have stopped since)"
        )
    else:
        console.print("no scheduler has led yet")
    jobs = Table("job", "task", "next fires (New York)", title="jobs", title_justify="left")
    for view in views:
        jobs.add_row(
            view.job.id,
            view.job.task.name,
            "\n".join(_local(fire) for fire in view.next_fires) or "-",
        )
    console.print(jobs)
    fires = Table(
        "job",
        "fire (New York)",
        "fire state",
        "task",
        "task state",
        "outcome",
        title="last fires",
        title_justify="left",
    )
    for view in views:
        for row in view.last_fires:
            outcome = task_outcome(result=row.task_result, error=row.task_error)
            fires.add_row(
                view.job.id,
                _local(row.scheduled_for),
                row.state + (" (manual)" if row.source == "manual" else ""),
                row.task_id if row.duplicate_of is None else f"{row.task_id}\n= {row.duplicate_of}",
                row.task_state or "not started",
                outcome_text(outcome) or "-",
                end_section=row is view.last_fires[-1],
            )
    console.print(fires)


def _listing_json(views: list[JobView], leader: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "leader": leader,
        "jobs": [
            {
                "job_id": view.job.id,
                "task": view.job.task.name,
                "next_fires": [fire.isoformat() for fire in view.next_fires],
                "last_fires": [_fire_json(row) for row in view.last_fires],
            }
            for view in views
        ],
    }


def _fire_json(row: ledger.LedgerRow) -> dict[str, Any]:
    outcome = task_outcome(result=row.task_result, error=row.task_error)
    return {
        "scheduled_for": row.scheduled_for.isoformat(),
        "state": row.state,
        "source": row.source,
        "task_id": row.task_id,
        "duplicate_of": row.duplicate_of,
        "task_state": row.task_state,
        "counts": outcome.counts,
        "failures": [{"item": what, "reason": reason} for what, reason in outcome.failures],
        "error": outcome.error,
    }


@schedule_group.command("run")
@click.argument("job_id")
@click.option("--wait", "wait_seconds", default=5.0, show_default=True, help="seconds to wait")
def run_job(job_id: str, wait_seconds: float) -> None:
    """Fire JOB_ID now: claimed in the ledger like any fire, then sent by the leader."""
    settings = _settings()
    jobs = {job.id: job for job in jobs_for(settings.scheduler_schedule)}
    job = jobs.get(job_id)
    if job is None:
        raise click.BadParameter(f"unknown job; one of {', '.join(jobs)}", param_hint="JOB_ID")
    fire, state = asyncio.run(_claim_now(settings, job=job, wait_seconds=wait_seconds))
    click.echo(f"{job_id} fire {fire.scheduled_for.isoformat()} task {fire.task_id}: {state}")
    if state == "claimed":
        click.echo("no leader sent it yet; the next leader will, within the job's grace window")


if __name__ == "__main__":
    schedule_group()
