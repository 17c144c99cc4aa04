"""Scheduler failover under the production defaults: how long until another replica leads.

Three `python -m workers.scheduler` replicas (probe schedule, default heartbeat,
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from service.embedded import EmbeddedPostgres, EmbeddedRedis
from service.migrations import migrate
from service.settings import Settings

TRIALS = 3
ROOT = Path(__file__).resolve().parent.parent


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


async def _trials(env: dict[str, str], url: str, logs: Path, *, sig: int) -> list[float]:
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        log = (logs / f"replica-{len(processes)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.scheduler"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(process)
        return process

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
            live = {p.pid for p in processes if p.pid != pid and p.poll() is None}
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
            if process.poll() is None:
                process.kill()
                process.wait()
    return times


async def _run(workdir: Path) -> list[tuple[str, list[float], float]]:
    postgres = EmbeddedPostgres(workdir / "pg", durable=False)
    redis_server = EmbeddedRedis(workdir / "redis")
    postgres.start()
    redis_server.start()
    try:
        await migrate(postgres.url)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")},
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis_server.url,
            "SCHEDULER_SCHEDULE": "probe",
            "LOG_FORMAT": "json",
        }
        defaults = Settings.from_env(env)
        kill = await _trials(env, postgres.url, workdir, sig=signal.SIGKILL)
        freeze = await _trials(env, postgres.url, workdir, sig=signal.SIGSTOP)
        poll = defaults.scheduler_election_seconds
        return [
            ("kill -9 leader", kill, poll),
            ("SIGSTOP leader", freeze, defaults.scheduler_session_timeout_seconds + poll),
        ]
    finally:
        redis_server.stop()
        postgres.stop()


def main() -> None:
    """Run the trials and print takeover times against their floor."""
    with tempfile.TemporaryDirectory(prefix="findash-bench-") as folder:
        results = asyncio.run(_run(Path(folder)))
    print("| failure | trials | takeover median (s) | max (s) | floor (s) |")  # noqa: T201
    print("|---|---|---|---|---|")  # noqa: T201
    for name, times, floor in results:
        print(  # noqa: T201 - the benchmark's report
            f"| {name} | {len(times)} | {statistics.median(times):.2f} | {max(times):.2f}"
            f" | ≤ {floor:.1f} |"
        )


if __name__ == "__main__":
    main()
