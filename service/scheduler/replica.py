"""A scheduler replica: follow until the lock is free, then lead until anything goes wrong.

While leading, APScheduler (AsyncIOScheduler, CronTriggers in America/New_York)
is only the wake-up clock: each trigger, each NOTIFY from `findash schedule run`
and a periodic catch-up tick run one pass of `_run_due`, where the pure planner
decides which fires are due and the ledger decides which are new. A pass claims
each due fire on the lock connection (fenced on the epoch), sends it under its
derived task id from a thread, then marks it sent. Any database error ends the term.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from service.core.celery_config import create_publisher_app
from service.core.clock import Clock, wall_clock
from service.core.contracts import (
    ALL_QUEUES,
    CONTRACTS,
    QUEUE_SCHEDULED,
    InvalidTaskArguments,
    TaskContract,
    contracts_by_name,
)
from service.core.logs import get_logger
from service.core.market_closures import load_trading_calendar
from service.core.publisher import TaskPublisher
from service.core.settings import Settings
from service.core.trading_calendar import EXCHANGE_TZ
from service.scheduler import ledger, metrics
from service.scheduler.leader import LeadershipLost, heartbeat, open_lock_connection, try_acquire
from service.scheduler.plan import (
    EPOCH,
    Every,
    Fire,
    Job,
    MarketTimes,
    Rule,
    due_fires,
    grace_floor_for,
    next_fires,
    wake_times,
)

log = get_logger(__name__)

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def replica_name() -> str:
    """`host:pid`, naming this replica in logs and in the epoch row."""
    return f"{socket.gethostname()}:{os.getpid()}"


def create_publisher(settings: Settings) -> TaskPublisher:
    """What the leader sends with: the one publisher, under `PUBLISH_TIMEOUT_SECONDS`."""
    return TaskPublisher(
        create_publisher_app(settings), timeout_seconds=settings.publish_timeout_seconds
    )


def wake_trigger(rule: Rule) -> BaseTrigger:
    """An APScheduler trigger that wakes the leader at (a superset of) the rule's fire times."""
    if isinstance(rule, Every):
        return IntervalTrigger(seconds=rule.seconds, start_date=EPOCH, timezone=UTC)
    hours, minutes = wake_times(rule)
    days = "mon-fri" if isinstance(rule, MarketTimes) else _WEEKDAYS[rule.weekday]
    return CronTrigger(
        day_of_week=days,
        hour=",".join(map(str, hours)),
        minute=",".join(map(str, minutes)),
        timezone=EXCHANGE_TZ,
    )


class _BrokerUnavailable(Exception):
    """A send failed; the fire stays claimed and the pass stops so heartbeats go on."""


class Scheduler:
    """One replica. `run()` alternates between following and leading until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        jobs: list[Job],
        publisher: TaskPublisher,
        name: str | None = None,
        clock: Clock = wall_clock,
        clock_speed: float = 1.0,
    ) -> None:
        self._settings = settings
        self._jobs = jobs
        self._jobs_by_id = {job.id: job for job in jobs}
        scheduled = (type(job.task) for job in jobs)
        self._contracts = contracts_by_name(tuple(dict.fromkeys((*CONTRACTS, *scheduled))))
        self._publisher = publisher
        self._name = name or replica_name()
        self._clock = clock
        self._clock_speed = clock_speed
        self._grace_floor = grace_floor_for(clock_speed)
        self._next_fire: datetime | None = None
        self._wake = asyncio.Event()
        self._retry_soon = False
        self._last_proof = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Follow, lead, follow again…; returns once `stop` is set."""
        log.info("scheduler started", replica=self._name, jobs=[job.id for job in self._jobs])
        while not stop.is_set():
            connection: asyncpg.Connection | None = None
            epoch: int | None = None
            try:
                connection = await open_lock_connection(self._settings, name=self._name)
                epoch = await self._follow(connection, stop)
                if epoch is not None:
                    await self._lead(connection, epoch, stop)
            except Exception as exc:  # noqa: BLE001 - any error ends the term; we follow again
                if epoch is not None:
                    log.warning("stepping down", leader=self._name, epoch=epoch, error=repr(exc))
                else:
                    log.warning("election failed", replica=self._name, error=repr(exc))
            finally:
                if connection is not None:
                    connection.terminate()
            await _sleep_unless(stop, self._settings.scheduler_election_seconds)
        log.info("scheduler stopped", replica=self._name)

    async def _follow(self, connection: asyncpg.Connection, stop: asyncio.Event) -> int | None:
        """Poll for the lock; the epoch of the new term once acquired, None when stopping."""
        following_logged = False
        while not stop.is_set():
            epoch = await try_acquire(connection, name=self._name)
            if epoch is not None:
                return epoch
            if not following_logged:
                log.info("following", replica=self._name)
                following_logged = True
            await _sleep_unless(stop, self._settings.scheduler_election_seconds)
        return None

    async def _lead(self, connection: asyncpg.Connection, epoch: int, stop: asyncio.Event) -> None:
        settings = self._settings
        self._last_proof = time.monotonic()
        log.info("became leader", leader=self._name, epoch=epoch)
        first_seen = await ledger.register_jobs(
            connection, list(self._jobs_by_id), now=self._clock()
        )
        clock = AsyncIOScheduler(timezone=UTC)

        async def wake() -> None:
            # A coroutine, so APScheduler's AsyncIOExecutor runs it on this loop, not a thread.
            self._wake.set()

        for job in self._jobs:
            clock.add_job(
                wake,
                wake_trigger(job.rule),
                id=job.id,
                misfire_grace_time=None,
                coalesce=True,
                max_instances=1,
            )

        def on_notify(*_: Any) -> None:
            self._wake.set()

        await connection.add_listener(ledger.NOTIFY_CHANNEL, on_notify)
        connection.add_termination_listener(on_notify)
        clock.start()
        metrics.LEADER.set(1)
        try:
            await self._run_due(connection, epoch, first_seen)
            next_catchup = time.monotonic() + settings.scheduler_catchup_seconds
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._sleep_seconds())
                await self._prove(connection, epoch)
                fire_due = self._next_fire is not None and self._clock() >= self._next_fire
                if (
                    fire_due
                    or self._wake.is_set()
                    or self._retry_soon
                    or time.monotonic() >= next_catchup
                ):
                    self._wake.clear()
                    self._retry_soon = False
                    await self._run_due(connection, epoch, first_seen)
                    next_catchup = time.monotonic() + settings.scheduler_catchup_seconds
        finally:
            metrics.LEADER.set(0)
            clock.shutdown(wait=False)
            log.info("leadership ended", leader=self._name, epoch=epoch)

    def _sleep_seconds(self) -> float:
        """Until the next heartbeat, or the next fire by this replica's clock if sooner.

        APScheduler wakes on real time; a pinned clock running faster (tests, demos) would
        otherwise have its fires claimed up to a catch-up interval late.
        """
        heartbeat = self._settings.scheduler_heartbeat_seconds
        if self._next_fire is None:
            return heartbeat
        until = (self._next_fire - self._clock()).total_seconds() / self._clock_speed
        return max(0.0, min(heartbeat, until))

    async def _prove(self, connection: asyncpg.Connection, epoch: int) -> None:
        await asyncio.wait_for(
            heartbeat(connection, epoch=epoch), timeout=self._settings.scheduler_heartbeat_seconds
        )
        self._last_proof = time.monotonic()

    def _check_lease(self, epoch: int) -> None:
        # The server ends our session (and frees the lock) after session_timeout of idleness;
        # if this process was frozen for half of that since its last proof, assume it is gone.
        idle = time.monotonic() - self._last_proof
        if idle > self._settings.scheduler_session_timeout_seconds / 2:
            raise LeadershipLost(f"epoch {epoch}: no proof of leadership for {idle:.1f} s")

    async def _run_due(
        self, connection: asyncpg.Connection, epoch: int, first_seen: dict[str, datetime]
    ) -> None:
        """One pass: send pending claims, then claim and send every new due fire."""
        now = self._clock()
        try:
            await self._send_pending(connection, epoch, now)
            await self._claim_due(connection, epoch, first_seen, now)
        except _BrokerUnavailable:
            self._retry_soon = True

    async def _claim_due(
        self,
        connection: asyncpg.Connection,
        epoch: int,
        first_seen: dict[str, datetime],
        now: datetime,
    ) -> None:
        calendar = await load_trading_calendar(connection)
        upcoming = [
            instant
            for job in self._jobs
            for instant in next_fires(job, calendar, after=now, count=1, horizon_days=8)
        ]
        self._next_fire = min(upcoming, default=None)
        due = due_fires(
            self._jobs, calendar, now=now, first_seen=first_seen, grace_floor=self._grace_floor
        )
        if not due:
            return
        known = await ledger.known_fires(connection, since=due[0].scheduled_for)
        self._last_proof = time.monotonic()
        for fire in due:
            if (fire.job_id, fire.scheduled_for) in known:
                continue
            await self._claim_and_send(connection, epoch, fire)

    async def _claim_and_send(self, connection: asyncpg.Connection, epoch: int, fire: Fire) -> None:
        job = self._jobs_by_id[fire.job_id]
        claim = await ledger.claim_fire(
            connection, job=job, fire=fire, epoch=epoch, claimed_by=self._name
        )
        self._last_proof = time.monotonic()
        if claim is None:
            current = await ledger.current_epoch(connection)
            if current != epoch:
                raise LeadershipLost(f"claim fenced: epoch is {current}, mine {epoch}")
            return
        fields = {
            "leader": self._name,
            "epoch": epoch,
            "job_id": job.id,
            "scheduled_for": fire.scheduled_for.isoformat(),
            "fire_task_id": fire.task_id,
        }
        if claim.state == "duplicate":
            log.info("fire suppressed as duplicate", duplicate_of=claim.duplicate_of, **fields)
            return
        log.info("fire claimed", **fields)
        pause = self._settings.scheduler_fault_pause_after_claim_seconds
        if pause:
            log.warning("fault injection: pausing between claim and send", seconds=pause)
            await asyncio.sleep(pause)
        await self._send(
            connection,
            epoch,
            job_id=job.id,
            task=job.task_at(fire.scheduled_for),
            task_id=fire.task_id,
            scheduled_for=fire.scheduled_for,
            expires_at=fire.scheduled_for + max(job.grace, self._grace_floor),
        )

    async def _send_pending(
        self, connection: asyncpg.Connection, epoch: int, now: datetime
    ) -> None:
        """Send claimed-but-unsent fires (a dead leader's, or the CLI's) under their task ids."""
        longest = max(job.grace for job in self._jobs)
        pending_list = await ledger.pending_fires(connection)
        self._last_proof = time.monotonic()
        for pending in pending_list:
            job = self._jobs_by_id.get(pending.job_id)
            grace = max(job.grace if job is not None else longest, self._grace_floor)
            fields = {
                "leader": self._name,
                "epoch": epoch,
                "job_id": pending.job_id,
                "fire_task_id": pending.task_id,
            }
            if pending.scheduled_for + grace < now:
                await ledger.mark_expired(connection, task_id=pending.task_id)
                metrics.FIRES.labels(job=self._job_label(pending.job_id), outcome="missed").inc()
                log.warning("claimed fire expired unsent", **fields)
                continue
            task = self._pending_task(pending)
            if task is None:
                # Claimed by a release whose task this one no longer knows (renamed, or its
                # arguments changed): sending it would fail on every pass and end every term.
                await ledger.mark_expired(connection, task_id=pending.task_id)
                metrics.FIRES.labels(job=self._job_label(pending.job_id), outcome="failed").inc()
                log.error("claimed fire dropped: no contract takes it", **fields)
                continue
            log.info(
                "resending claimed fire",
                claimed_in_epoch=pending.epoch,
                source=pending.source,
                scheduled_for=pending.scheduled_for.isoformat(),
                **fields,
            )
            await self._send(
                connection,
                epoch,
                job_id=pending.job_id,
                task=task,
                task_id=pending.task_id,
                scheduled_for=pending.scheduled_for,
                expires_at=pending.scheduled_for + grace,
            )

    def _job_label(self, job_id: str) -> str:
        # A pending fire may name a job an older release had: bounded to this schedule's.
        return job_id if job_id in self._jobs_by_id else "other"

    def _pending_task(self, pending: ledger.PendingFire) -> TaskContract | None:
        """The contract a claimed fire sends, or None if no known contract accepts it."""
        contract = self._contracts.get(pending.task_name)
        if contract is None:
            return None
        try:
            return contract.decode(pending.kwargs)
        except InvalidTaskArguments:
            return None

    async def _send(
        self,
        connection: asyncpg.Connection,
        epoch: int,
        *,
        job_id: str,
        task: TaskContract,
        task_id: str,
        scheduled_for: datetime,
        expires_at: datetime,
    ) -> None:
        self._check_lease(epoch)
        fields = {"leader": self._name, "epoch": epoch, "job_id": job_id, "fire_task_id": task_id}
        try:
            # The one publisher, bounded by PUBLISH_TIMEOUT_SECONDS: a frozen broker ends this
            # pass instead of stalling the leader. The fire stays claimed and is re-sent under
            # the same task id; if the abandoned send completes later, the registry drops the
            # second copy.
            # Relative to this replica's clock: the worker compares expiry with its own.
            remaining = max(1.0, (expires_at - self._clock()).total_seconds())
            await self._publisher.publish(
                task, task_id=task_id, expires_in=remaining, queue=fire_queue(task)
            )
        except Exception as exc:  # kombu, redis-py and socket errors alike: retry later
            metrics.FIRES.labels(job=self._job_label(job_id), outcome="failed").inc()
            log.error("fire send failed; stays claimed", error=repr(exc), **fields)
            raise _BrokerUnavailable from exc
        await ledger.mark_sent(connection, task_id=task_id, epoch=epoch)
        self._last_proof = time.monotonic()
        lag = max(0.0, (self._clock() - scheduled_for).total_seconds())
        metrics.FIRES.labels(job=self._job_label(job_id), outcome="sent").inc()
        metrics.FIRE_LAG.labels(job=self._job_label(job_id)).observe(lag)
        metrics.CATCHUP_LAG.set(lag)
        log.info("fire sent", task_name=task.name, **fields)


def fire_queue(task: TaskContract) -> str:
    """Where a fire goes: the `scheduled` queue for tasks of the general queues (capacity
    user submits cannot take); a task with a queue of its own keeps it, since only its own
    workers know it."""
    return QUEUE_SCHEDULED if task.queue in ALL_QUEUES else task.queue


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
