"""`findash schedule …`: the scheduler's jobs, their next and last fires, and manual fires.

Talks to Postgres directly (DATABASE_URL), like the `users` commands: `list` reads
the ledger and plans the next fires with the same calendar the leader uses; `run`
claims a fire now, as the leader would, and the leader (woken by NOTIFY) sends it.
"""

from __future__ import annotations

import asyncio
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
def list_jobs(next_count: int, last_count: int) -> None:
    """Each job with its next fires (trading-calendar aware) and its last fires from the ledger."""
    settings = _settings()
    views, leader = asyncio.run(_collect(settings, next_count=next_count, last_count=last_count))
    console = Console(width=200)
    if leader is not None and leader["leader"]:
        console.print(
            f"leader {leader['leader']} epoch {leader['epoch']}"
            f" since {leader['acquired_at']:%Y-%m-%d %H:%M:%S %Z}"
            " (the last to win the lock; it may have stopped since)"
        )
    else:
        console.print("no scheduler has led yet")
    table = Table("job", "task", "next fires (New York)", "last fires (state / task state)")
    for view in views:
        last = [
            f"{_local(row.scheduled_for)} {row.state}"
            + (f" / {row.task_state}" if row.task_state else "")
            + (" (manual)" if row.source == "manual" else "")
            for row in view.last_fires
        ]
        table.add_row(
            view.job.id,
            view.job.task.name,
            "\n".join(_local(fire) for fire in view.next_fires) or "-",
            "\n".join(last) or "-",
        )
    console.print(table)


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
