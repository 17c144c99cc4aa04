"""Scheduler replicas as real processes on real Postgres, Redis and a prefork worker:
one leader, fires run exactly once through kill -9, SIGSTOP and a crash between claim and send.

The replicas run the probe schedule (SCHEDULER_SCHEDULE=probe: a fire every 2 s and a
shadow job every 4 s sending the same task), and the worker's `scheduler_probe` task
counts its executions per task id, so a fire that ran twice shows up as runs = 2.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from service.cli.schedule import schedule_group
from service.core.trading_calendar import TradingCalendar
from service.dev.embedded import EmbeddedRedis
from service.scheduler.jobs import jobs_for
from service.scheduler.plan import fire_task_id, fire_times
from tests.conftest import unpinned
from tests.processes import ManagedProcess

SESSION_TIMEOUT = 5
FAST_SCHEDULER = {
    "SCHEDULER_SCHEDULE": "probe",
    "SCHEDULER_HEARTBEAT_SECONDS": "0.5",
    "SCHEDULER_ELECTION_SECONDS": "0.2",
    "SCHEDULER_SESSION_TIMEOUT_SECONDS": str(SESSION_TIMEOUT),
    "SCHEDULER_CATCHUP_SECONDS": "2",
}
PROBE_JOBS = jobs_for("probe")


class Replicas:
    """Scheduler processes started by one test, stopped at its end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []

    def start(self, *, extra_env: dict[str, str] | None = None) -> ManagedProcess:
        """Start one more replica."""
        index = len(self.processes)
        process = ManagedProcess(
            [sys.executable, "-m", "service.scheduler"],
            env={**self.env, **FAST_SCHEDULER, **(extra_env or {})},
            log_path=self.log_dir / f"scheduler-{index}.log",
        )
        process.start()
        self.processes.append(process)
        return process

    def by_pid(self, pid: int) -> ManagedProcess:
        """The replica with process id `pid`."""
        return next(p for p in self.processes if p.pid == pid)

    def stop_all(self) -> None:
        """SIGCONT (in case one is frozen), then stop every replica."""
        for process in self.processes:
            if process.process is not None and process.process.poll() is None:
                process.signal_group(signal.SIGCONT)
            process.stop(timeout=10)


@pytest.fixture
def replicas(
    base_env: dict[str, str], scratch_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Replicas]:
    """A place to start scheduler replicas; all are stopped after the test."""
    log_dir = scratch_dir / f"schedulers-{request.node.name}"
    log_dir.mkdir(exist_ok=True)
    # The probe schedule fires every few real seconds and these tests check failover by
    # elapsed time against datetime.now, so replicas run on the wall clock, not the pinned one.
    group = Replicas(unpinned(base_env), log_dir)
    yield group
    group.stop_all()


@pytest.fixture
async def fresh_ledger(pool: asyncpg.Pool) -> None:
    """An empty ledger: the scheduler has never run, so nothing can be replayed."""
    await pool.execute("TRUNCATE schedule_fires, scheduler_jobs, scheduler_probe_runs")


async def leader_pid(pool: asyncpg.Pool) -> tuple[int, int | None]:
    """The current epoch and the pid of its leader (from `host:pid`)."""
    row = await pool.fetchrow("SELECT epoch, leader FROM scheduler_leader WHERE id = 1")
    assert row is not None
    name = row["leader"] or ""
    return row["epoch"], int(name.rsplit(":", 1)[1]) if ":" in name else None


async def wait_for_leader(
    pool: asyncpg.Pool, replicas: Replicas, *, after_epoch: int, within: float
) -> tuple[int, ManagedProcess, float]:
    """Wait for a replica of ours to lead with an epoch above `after_epoch`."""
    started = time.monotonic()
    pids = {p.pid for p in replicas.processes}
    while time.monotonic() - started < within:
        epoch, pid = await leader_pid(pool)
        if epoch > after_epoch and pid in pids:
            return epoch, replicas.by_pid(pid), time.monotonic() - started
        await asyncio.sleep(0.05)
    logs = "\n".join(p.log_tail(1500) for p in replicas.processes)
    raise AssertionError(f"no new leader after epoch {after_epoch} within {within} s\n{logs}")


async def wait_for_sent(pool: asyncpg.Pool, *, count: int, within: float) -> None:
    """Wait until at least `count` fires are marked sent."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await pool.fetchval("SELECT count(*) FROM schedule_fires WHERE state = 'sent'") >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} fires sent within {within} s")


async def assert_every_fire_ran_once(pool: asyncpg.Pool, *, until: datetime) -> int:
    """Every planned fire since the jobs were first seen, up to `until`, is in the ledger;
    each sent fire ran exactly once at the worker and no suppressed duplicate ran at all.
    Returns the number of fires checked."""
    first_seen = {
        row["job_id"]: row["first_seen_at"]
        for row in await pool.fetch("SELECT job_id, first_seen_at FROM scheduler_jobs")
    }
    expected = {
        fire_task_id(job.id, instant): (job.id, instant)
        for job in PROBE_JOBS
        for instant in fire_times(job, TradingCalendar(), start=first_seen[job.id], end=until)
    }
    rows = await pool.fetch(
        "SELECT task_id::text AS task_id, state FROM schedule_fires WHERE scheduled_for < $1",
        until,
    )
    ledger = {row["task_id"]: row["state"] for row in rows}
    missing = sorted(str(expected[t]) for t in expected if t not in ledger)
    assert missing == [], f"fires never claimed: {missing}"
    assert set(ledger) == set(expected), "the ledger holds fires that were never planned"
    assert set(ledger.values()) <= {"sent", "duplicate"}, ledger
    sent = {t for t, state in ledger.items() if state == "sent"}
    duplicates = set(ledger) - sent
    assert duplicates, "the shadow job's coinciding fires should be suppressed as duplicates"
    deadline = time.monotonic() + 20
    runs: dict[str, int] = {}
    while time.monotonic() < deadline:
        runs = {
            row["task_id"]: row["runs"]
            for row in await pool.fetch(
                "SELECT task_id::text AS task_id, runs FROM scheduler_probe_runs"
            )
        }
        if sent <= set(runs):
            break
        await asyncio.sleep(0.2)
    assert sent <= set(runs), f"sent fires that never ran: {sorted(sent - set(runs))}"
    assert {t: runs[t] for t in sent if runs[t] != 1} == {}, "fires ran more than once"
    assert duplicates.isdisjoint(runs), "a suppressed duplicate ran"
    return len(expected)


def event_lines(process: ManagedProcess, event: str) -> list[dict[str, object]]:
    """The replica's JSON log lines with this event name."""
    return [line for line in process.json_lines() if line.get("event") == event]


@pytest.mark.usefixtures("worker", "fresh_ledger")
class TestFailover:
    @pytest.mark.timeout(60)
    async def test_one_replica_leads_and_fires_run_once(
        self, pool: asyncpg.Pool, replicas: Replicas
    ) -> None:
        """Of three replicas one leads; each fire runs once and coinciding ones are suppressed."""
        epoch0, _ = await leader_pid(pool)
        for _ in range(3):
            replicas.start()
        epoch, leader, _ = await wait_for_leader(pool, replicas, after_epoch=epoch0, within=20)
        await wait_for_sent(pool, count=4, within=20)
        until = datetime.now(UTC) - timedelta(seconds=1)
        assert (await leader_pid(pool))[0] == epoch
        followers = [p for p in replicas.processes if p is not leader]
        for follower in followers:  # first, so none takes over when the leader stops
            follower.stop(timeout=10)
        replicas.stop_all()
        assert await assert_every_fire_ran_once(pool, until=until) >= 4
        claims = event_lines(leader, "fire claimed")
        assert claims
        assert all(line["epoch"] == epoch for line in claims)
        assert event_lines(leader, "fire sent")
        assert event_lines(leader, "fire suppressed as duplicate")
        assert all(not event_lines(p, "fire claimed") for p in followers)

    @pytest.mark.timeout(60)
    async def test_kill_9_leader(self, pool: asyncpg.Pool, replicas: Replicas) -> None:
        """After kill -9 of the leader another leads within 3 s; no fire is missed or doubled."""
        epoch0, _ = await leader_pid(pool)
        for _ in range(3):
            replicas.start()
        epoch, leader, _ = await wait_for_leader(pool, replicas, after_epoch=epoch0, within=20)
        await wait_for_sent(pool, count=2, within=20)
        leader.signal_group(signal.SIGKILL)
        _, successor, takeover = await wait_for_leader(pool, replicas, after_epoch=epoch, within=10)
        assert successor is not leader
        assert takeover < 3, f"takeover took {takeover:.2f} s"
        await asyncio.sleep(5)
        until = datetime.now(UTC) - timedelta(seconds=1)
        replicas.stop_all()
        await assert_every_fire_ran_once(pool, until=until)
        print(f"kill -9 takeover: {takeover:.2f} s")  # noqa: T201 - recorded in docs/SCHEDULER.md

    @pytest.mark.timeout(60)
    async def test_sigstop_leader(self, pool: asyncpg.Pool, replicas: Replicas) -> None:
        """A leader frozen for 20 s is replaced within the session timeout + 3 s, and once
        resumed it steps down without running any fire a second time."""
        epoch0, _ = await leader_pid(pool)
        for _ in range(3):
            replicas.start()
        epoch, leader, _ = await wait_for_leader(pool, replicas, after_epoch=epoch0, within=20)
        await wait_for_sent(pool, count=2, within=20)
        frozen_at = time.monotonic()
        leader.signal_group(signal.SIGSTOP)
        _, successor, takeover = await wait_for_leader(
            pool, replicas, after_epoch=epoch, within=SESSION_TIMEOUT + 10
        )
        assert successor is not leader
        assert takeover < SESSION_TIMEOUT + 3, f"takeover took {takeover:.2f} s"
        await asyncio.sleep(max(0.0, 20 - (time.monotonic() - frozen_at)))
        leader.signal_group(signal.SIGCONT)
        await asyncio.sleep(4)
        until = datetime.now(UTC) - timedelta(seconds=1)
        assert event_lines(leader, "stepping down"), leader.log_tail()
        assert (await leader_pid(pool))[1] == successor.pid
        replicas.stop_all()
        await assert_every_fire_ran_once(pool, until=until)
        print(f"SIGSTOP takeover: {takeover:.2f} s")  # noqa: T201 - recorded in docs/SCHEDULER.md

    @pytest.mark.timeout(60)
    async def test_leader_killed_between_claim_and_send(
        self, pool: asyncpg.Pool, replicas: Replicas
    ) -> None:
        """A fire claimed by a leader killed before sending is sent by the next leader under the
        same task id, and runs once."""
        epoch0, _ = await leader_pid(pool)
        doomed = replicas.start(extra_env={"SCHEDULER_FAULT_PAUSE_AFTER_CLAIM_SECONDS": "30"})
        epoch, leader, _ = await wait_for_leader(pool, replicas, after_epoch=epoch0, within=20)
        assert leader is doomed
        replicas.start()
        deadline = time.monotonic() + 15
        claimed = None
        while claimed is None and time.monotonic() < deadline:
            claimed = await pool.fetchrow(
                "SELECT task_id::text AS task_id, epoch FROM schedule_fires WHERE state = 'claimed'"
            )
            await asyncio.sleep(0.05)
        assert claimed is not None
        assert claimed["epoch"] == epoch
        doomed.signal_group(signal.SIGKILL)
        new_epoch, successor, _ = await wait_for_leader(
            pool, replicas, after_epoch=epoch, within=10
        )
        await asyncio.sleep(3)
        row = await pool.fetchrow(
            "SELECT state, epoch, sent_epoch FROM schedule_fires WHERE task_id = $1::uuid",
            claimed["task_id"],
        )
        assert row is not None
        assert dict(row) == {"state": "sent", "epoch": epoch, "sent_epoch": new_epoch}
        resent = event_lines(successor, "resending claimed fire")
        assert [line["fire_task_id"] for line in resent] == [claimed["task_id"]]
        until = datetime.now(UTC) - timedelta(seconds=1)
        replicas.stop_all()
        await assert_every_fire_ran_once(pool, until=until)

    @pytest.mark.timeout(60)
    async def test_frozen_broker_does_not_stall_the_leader(
        self, pool: asyncpg.Pool, replicas: Replicas, redis_server: EmbeddedRedis
    ) -> None:
        """With the broker frozen, a send gives up after PUBLISH_TIMEOUT_SECONDS and the fire
        stays claimed; once the broker is back every fire is sent and runs once."""
        epoch0, _ = await leader_pid(pool)
        leader_process = replicas.start()
        await wait_for_leader(pool, replicas, after_epoch=epoch0, within=20)
        await wait_for_sent(pool, count=2, within=20)
        assert redis_server.process is not None
        os.kill(redis_server.process.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 15
            while not event_lines(leader_process, "fire send failed; stays claimed"):
                assert time.monotonic() < deadline, "the leader never gave up on a frozen broker"
                await asyncio.sleep(0.2)
        finally:
            os.kill(redis_server.process.pid, signal.SIGCONT)
        assert leader_process.process is not None
        assert leader_process.process.poll() is None
        sent_before = await pool.fetchval(
            "SELECT count(*) FROM schedule_fires WHERE state = 'sent'"
        )
        await wait_for_sent(pool, count=sent_before + 2, within=20)
        until = datetime.now(UTC) - timedelta(seconds=1)
        replicas.stop_all()
        await assert_every_fire_ran_once(pool, until=until)

    @pytest.mark.timeout(60)
    async def test_catch_up_after_outage(self, pool: asyncpg.Pool, replicas: Replicas) -> None:
        """With no replica running for 6 s, the next leader claims every fire missed within
        the grace window, and each runs once."""
        epoch0, _ = await leader_pid(pool)
        first = replicas.start()
        epoch, _, _ = await wait_for_leader(pool, replicas, after_epoch=epoch0, within=20)
        await wait_for_sent(pool, count=2, within=20)
        first.stop(timeout=10)
        stopped = datetime.now(UTC)
        await asyncio.sleep(6)
        second = replicas.start()
        await wait_for_leader(pool, replicas, after_epoch=epoch, within=20)
        await asyncio.sleep(2)
        until = datetime.now(UTC) - timedelta(seconds=1)
        replicas.stop_all()
        await assert_every_fire_ran_once(pool, until=until)
        caught_up = await pool.fetchval(
            "SELECT count(*) FROM schedule_fires WHERE scheduled_for > $1 AND scheduled_for < $2"
            " AND claimed_by LIKE $3",
            stopped + timedelta(seconds=1),
            stopped + timedelta(seconds=5),
            f"%:{second.pid}",
        )
        assert caught_up >= 2


@pytest.mark.usefixtures("worker", "fresh_ledger")
class TestScheduleCli:
    @pytest.mark.timeout(60)
    async def test_run_is_claimed_and_sent_by_the_leader(
        self, pool: asyncpg.Pool, replicas: Replicas, base_env: dict[str, str]
    ) -> None:
        """`schedule run` claims a manual fire that the leader sends and the worker runs once;
        `schedule list` then shows it."""
        epoch0, _ = await leader_pid(pool)
        replicas.start()
        await wait_for_leader(pool, replicas, after_epoch=epoch0, within=20)
        env = {**unpinned(base_env), **FAST_SCHEDULER}
        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke, schedule_group, ["run", "probe-every-2s"], env=env
        )
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[0].endswith(": sent")
        task_id = result.output.split(" task ")[1].split(":")[0]
        deadline = time.monotonic() + 15
        runs = None
        while runs is None and time.monotonic() < deadline:
            runs = await pool.fetchval(
                "SELECT runs FROM scheduler_probe_runs WHERE task_id = $1::uuid", task_id
            )
            await asyncio.sleep(0.1)
        assert runs == 1
        # The probe counts its run just before its outcome is recorded; wait for that, so the
        # listing cannot catch the task between the two ("sent / STARTED").
        while time.monotonic() < deadline:
            state = await pool.fetchval("SELECT state FROM tasks WHERE id = $1", task_id)
            if state == "SUCCESS":
                break
            await asyncio.sleep(0.1)
        listing = await asyncio.to_thread(
            runner.invoke, schedule_group, ["list", "--last", "50"], env=env
        )
        assert listing.exit_code == 0, listing.output
        assert "probe-shadow-every-4s" in listing.output
        # The fire's row names its task and that task's state.
        pattern = r"sent \(manual\) +│ +" + task_id + r" +│ +SUCCESS"
        assert re.search(pattern, listing.output), listing.output

    def test_run_unknown_job_is_a_usage_error(self, base_env: dict[str, str]) -> None:
        """`schedule run` with an unknown job id exits 2 naming the known jobs."""
        result = CliRunner().invoke(schedule_group, ["run", "nope"], env=base_env)
        assert result.exit_code == 2
        assert "hourly-price-update" in result.output
