"""Scheduler failover under the production defaults: how long until another replica leads.

Three `python -m service.scheduler` replicas (probe schedule, default heartbeat,
election interval and session timeout) on embedded Postgres and Redis. Each trial
kills (SIGKILL) or freezes (SIGSTOP) the leader and times, from the signal, until
another replica's epoch is in `scheduler_leader`. The floor is the followers' poll
interval (SCHEDULER_ELECTION_SECONDS) for a kill, and the session timeout plus that
poll for a freeze; a lock connection without `idle_session_timeout` never fails over
from a freeze (see /work/shared/notes/scheduler.md).
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import asyncpg

from bench.stack import Stack, running_stack
from service.core.settings import Settings
from tests.processes import ManagedProcess

TRIALS = 3


async def _leader(connection: asyncpg.Connection) -> tuple[int, int | None]:
    row = await connection.fetchrow("SELECT epoch, leader FROM scheduler_leader WHERE id = 1")
    name = row["leader"] or ""
    return row["epoch"], int(name.rsplit(":", 1)[1]) if ":" in name else None


async def _wait_new_leader(
    connection: asyncpg.Connection, *, after_epoch: int, pids: set[int], limit: float
) -> tuple[int, int, float]:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        epoch, pid = await _leader(connection)
        if epoch > after_epoch and pid in pids:
            return epoch, pid, time.monotonic() - started
        await asyncio.sleep(0.02)
    raise TimeoutError(f"no new leader within {limit} s")


def _running(process: ManagedProcess) -> bool:
    return process.process is not None and process.process.poll() is None


async def _trials(env: dict[str, str], url: str, logs: Path, *, sig: int) -> list[float]:
    processes: list[ManagedProcess] = []

    def start() -> None:
        process = ManagedProcess(
            [sys.executable, "-m", "service.scheduler"],
            env=env,
            log_path=logs / f"replica-{len(processes)}.log",
        )
        process.start()
        processes.append(process)

    connection = await asyncpg.connect(url)
    times: list[float] = []
    try:
        for _ in range(3):
            start()
        epoch, _ = await _leader(connection)
        epoch, pid, _ = await _wait_new_leader(
            connection, after_epoch=epoch - 1, pids={p.pid for p in processes}, limit=30
        )
        for _ in range(TRIALS):
            await asyncio.sleep(3)
            os.kill(pid, sig)
            live = {p.pid for p in processes if p.pid != pid and _running(p)}
            epoch, new_pid, seconds = await _wait_new_leader(
                connection, after_epoch=epoch, pids=live, limit=60
            )
            times.append(seconds)
            if sig == signal.SIGSTOP:
                os.kill(pid, signal.SIGKILL)
            start()
            pid = new_pid
    finally:
        await connection.close()
        for process in processes:
            if _running(process):
                process.signal_group(signal.SIGKILL)
            process.stop()
    return times


async def _run(stack: Stack) -> list[tuple[str, list[float], float]]:
    env = {
        **{k: v for k, v in stack.env.items() if not k.startswith("SCHEDULER_")},
        "SCHEDULER_SCHEDULE": "probe",
    }
    defaults = Settings.from_env(env)
    kill = await _trials(env, stack.postgres.url, stack.directory, sig=signal.SIGKILL)
    freeze = await _trials(env, stack.postgres.url, stack.directory, sig=signal.SIGSTOP)
    poll = defaults.scheduler_election_seconds
    return [
        ("kill -9 leader", kill, poll),
        ("SIGSTOP leader", freeze, defaults.scheduler_session_timeout_seconds + poll),
    ]


def main() -> None:
    """Run the trials and print takeover times against their floor."""
    with running_stack(durable=False) as stack:
        results = asyncio.run(_run(stack))
    print("| failure | trials | takeover median (s) | max (s) | floor (s) |")  # noqa: T201
    print("|---|---|---|---|---|")  # noqa: T201
    for name, times, floor in results:
        print(  # noqa: T201 - the benchmark's report
            f"| {name} | {len(times)} | {statistics.median(times):.2f} | {max(times):.2f}"
            f" | ≤ {floor:.1f} |"
        )


if __name__ == "__main__":
    main()
