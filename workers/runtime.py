"""The bridge from Celery's synchronous task calls to async task bodies.

Each worker process owns one `AsyncRuntime`: one event loop in a background
thread (started after fork), one `aiohttp.ClientSession`, one asyncpg pool and
one asyncio Redis client, shared by every task the process runs. A task body
is `async def body(ctx: TaskContext, **kwargs)`; the runtime runs it on that
loop under a deadline and a cancellation watch, and hands back its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from celery.exceptions import SoftTimeLimitExceeded

from service.core import redis_clients, task_registry
from service.core.celery_config import create_publisher_app
from service.core.clock import Clock, clock_from_settings, exchange_today
from service.core.contracts import TaskContract
from service.core.database import create_pool
from service.core.logs import get_logger
from service.core.publisher import TaskPublisher
from service.core.redis_connection import redis_endpoint
from service.core.redis_keys import cancel_key
from service.core.settings import Settings
from workers.db_retry import in_transaction

log = get_logger(__name__)

CANCEL_POLL_SECONDS = 0.2
HEARTBEAT_SECONDS = 2.0
# A claim waits this long for a lock on its registry row, then fails and is retried.
CLAIM_LOCK_TIMEOUT_SECONDS = 2.0
PROGRESS_MIN_INTERVAL_SECONDS = 0.25

ProgressCallback = Callable[[int, int, str], None]


class TaskCancelled(Exception):
    """The task was asked to stop and its coroutine was cancelled."""


class TaskDeadlineExceeded(Exception):
    """The task body ran past its deadline and was cancelled."""


class TaskFailed(Exception):
    """A body's explained failure: the task ends FAILURE with this message as its error.

    It is an outcome, not a bug: Celery logs it without a traceback and nothing retries it.
    """


class TaskSkipped(Exception):
    """This copy of the task must not run: it finished already, or another copy is running."""


class ClaimFailed(Exception):
    """The registry could not be reached to claim this copy; the message must be retried."""


@dataclass(frozen=True, slots=True)
class Resources:
    """The I/O resources one worker process shares between all of its tasks."""

    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    redis: aioredis.Redis
    publisher: TaskPublisher


@dataclass(slots=True)
class TaskContext:
    """What a task body receives: its identity, settings, clock, shared I/O and a progress
    reporter."""

    task_id: str
    task_name: str
    settings: Settings
    clock: Clock
    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    redis: aioredis.Redis
    publisher: TaskPublisher
    progress_sink: ProgressCallback
    _last_progress_at: float = 0.0
    _sink_call: asyncio.Future[None] | None = None

    def today(self) -> date:
        """Today on the exchange's (New York) calendar, by the injected clock."""
        return exchange_today(self.clock)

    async def report_progress(self, *, current: int, total: int, message: str = "") -> None:
        """Record `{current, total, message}` (state PROGRESS) in the registry and Celery.

        Calls closer together than 0.25 s are dropped, except the last one (current == total).
        Progress is advisory: a Postgres or Redis hiccup while recording it is logged and the
        task goes on.
        """
        now = time.monotonic()
        if current < total and now - self._last_progress_at < PROGRESS_MIN_INTERVAL_SECONDS:
            return
        self._last_progress_at = now
        progress = task_registry.Progress(current=current, total=total, message=message)
        try:
            async with self.pool.acquire(timeout=HEARTBEAT_SECONDS) as connection:
                await task_registry.record_progress(
                    connection, task_id=self.task_id, progress=progress
                )
        except (asyncpg.PostgresError, aioredis.RedisError, OSError, TimeoutError) as exc:
            log.warning("progress not recorded", error=str(exc) or type(exc).__name__)
        self._copy_to_celery(current, total, message)

    def _copy_to_celery(self, current: int, total: int, message: str) -> None:
        # Celery's copy (the result backend) is a courtesy for Flower: never awaited, and
        # skipped while the previous copy is still being written (a backend that is down
        # retries for REDIS_RETRY_SECONDS), so it can neither stall the body nor pile up.
        if self._sink_call is not None and not self._sink_call.done():
            return
        call = asyncio.get_running_loop().run_in_executor(
            None, self.progress_sink, current, total, message
        )
        call.add_done_callback(_log_sink_failure)
        self._sink_call = call


def _log_sink_failure(call: asyncio.Future[None]) -> None:
    if not call.cancelled() and call.exception() is not None:
        log.warning("progress not copied to Celery", error=repr(call.exception()))


TaskBody = Callable[["TaskContext", Any], Coroutine[Any, Any, Any]]


class AsyncRuntime:
    """One event loop thread and one set of shared resources per worker process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clock = clock_from_settings(settings)
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._resources: Resources | None = None
        self._resources_lock: asyncio.Lock | None = None
        self._start_lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """This process's loop, started on first use (a forked child starts its own)."""
        with self._start_lock:
            if self._pid != os.getpid() or self._loop is None:
                self._start()
            assert self._loop is not None
            return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="findash-async-runtime", daemon=True)
        self._thread.start()
        ready.wait(timeout=5)
        self._loop = loop
        self._pid = os.getpid()
        self._resources = None
        self._resources_lock = None
        log.debug("async runtime started", pid=self._pid)

    async def resources(self) -> Resources:
        """Open the session, pool and Redis client once, on first need."""
        if self._resources is not None:
            return self._resources
        if self._resources_lock is None:
            self._resources_lock = asyncio.Lock()
        async with self._resources_lock:
            if self._resources is None:
                settings = self._settings
                timeout = aiohttp.ClientTimeout(
                    total=settings.http_timeout_seconds,
                    connect=min(5.0, settings.http_timeout_seconds),
                )
                connector = aiohttp.TCPConnector(limit=200, limit_per_host=100, ttl_dns_cache=300)
                session = aiohttp.ClientSession(timeout=timeout, connector=connector)
                pool = await create_pool(settings, application_name=f"findash-worker-{os.getpid()}")
                redis_client = redis_clients.async_client(
                    redis_endpoint(settings),
                    budget_seconds=settings.redis_retry_seconds,
                    socket_timeout=10,
                    connect_timeout=5,
                )
                publisher = TaskPublisher(
                    create_publisher_app(settings),
                    timeout_seconds=settings.publish_timeout_seconds,
                )
                self._resources = Resources(
                    session=session, pool=pool, redis=redis_client, publisher=publisher
                )
                log.info("worker resources opened", pid=os.getpid())
        return self._resources

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Schedule `coroutine` on this process's loop from any other thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run_task(
        self,
        body: TaskBody,
        *,
        contract: type[TaskContract],
        task_id: str,
        kwargs: dict[str, Any],
        deadline_seconds: float,
        progress_sink: ProgressCallback,
        delivery: int = 0,
        worker: str = "",
    ) -> Any:
        """Run `body(ctx, contract.decode(kwargs))` on the loop and block this (Celery) thread
        for its result.

        The run is recorded in the task registry. Arguments that break the contract fail the
        task (`InvalidTaskArguments`) before the body starts. Raises `TaskSkipped` when this
        copy must not run, `TaskCancelled` when the task was asked to stop, and
        `TaskDeadlineExceeded` when it ran past `deadline_seconds`.
        """
        task_name = contract.name
        future = self.submit(
            self._supervise(
                body,
                contract=contract,
                task_id=task_id,
                kwargs=kwargs,
                deadline_seconds=deadline_seconds,
                progress_sink=progress_sink,
                delivery=delivery,
                worker=worker,
            )
        )
        try:
            return future.result()
        except SoftTimeLimitExceeded:
            # Celery's soft limit can fire (in this thread) before the loop's own deadline;
            # the cancelled coroutine records nothing, so the registry is told here.
            future.cancel()
            self._record_deadline(task_id=task_id, task_name=task_name, seconds=deadline_seconds)
            raise
        except BaseException:
            # e.g. a cold shutdown: stop the coroutine too, and leave the row for redelivery.
            future.cancel()
            raise

    def _record_deadline(self, *, task_id: str, task_name: str, seconds: float) -> None:
        error = task_registry.TaskError(
            type=TaskDeadlineExceeded.__name__,
            message=f"{task_name} exceeded its {seconds:.0f} s deadline",
        )

        async def record() -> None:
            await self._finish(await self.resources(), task_id, "FAILURE", error=error)

        try:
            self.submit(record()).result(timeout=HEARTBEAT_SECONDS * 2)
        except Exception as exc:  # noqa: BLE001 - the lost-task sweep still ends the row
            log.warning("deadline not recorded", error=repr(exc))

    async def _supervise(
        self,
        body: TaskBody,
        *,
        contract: type[TaskContract],
        task_id: str,
        kwargs: dict[str, Any],
        deadline_seconds: float,
        progress_sink: ProgressCallback,
        delivery: int,
        worker: str,
    ) -> Any:
        try:
            resources = await self.resources()
            claimed = await self._claim(
                resources,
                task_id=task_id,
                name=contract.name,
                params=kwargs,
                delivery=delivery,
                worker=worker,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("claim failed; the message will be retried", error=repr(exc))
            raise ClaimFailed(f"{type(exc).__name__}: {exc}") from exc
        if not claimed:
            log.info("duplicate copy dropped", delivery=delivery)
            raise TaskSkipped(task_id)
        try:
            result = await self._run_body(
                body,
                resources=resources,
                task=contract.decode(kwargs),
                task_id=task_id,
                deadline_seconds=deadline_seconds,
                progress_sink=progress_sink,
            )
        except TaskCancelled:
            await self._finish(
                resources,
                task_id,
                "REVOKED",
                error=task_registry.TaskError(type="Cancelled", message="cancelled while running"),
            )
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._finish(
                resources,
                task_id,
                "FAILURE",
                error=task_registry.TaskError(type=type(exc).__name__, message=str(exc)[:2000]),
            )
            raise
        await self._finish(resources, task_id, "SUCCESS", result=result)
        return result

    async def _claim(
        self,
        resources: Resources,
        *,
        task_id: str,
        name: str,
        params: dict[str, Any],
        delivery: int,
        worker: str,
    ) -> bool:
        async with resources.pool.acquire() as connection, connection.transaction():
            # A row locked elsewhere must not hold this worker slot for the command timeout.
            await connection.execute(
                f"SET LOCAL lock_timeout = '{int(CLAIM_LOCK_TIMEOUT_SECONDS * 1000)}ms'"
            )
            return await task_registry.claim_run(
                connection,
                task_id=task_id,
                name=name,
                params=params,
                delivery=delivery,
                worker=worker,
                stale_after=timedelta(seconds=self._settings.task_stale_seconds),
            )

    async def _finish(
        self,
        resources: Resources,
        task_id: str,
        state: Literal["SUCCESS", "FAILURE", "REVOKED"],
        *,
        result: Any = None,
        error: task_registry.TaskError | None = None,
    ) -> None:
        # The outcome must survive a Postgres restart as the body ends.
        await in_transaction(
            resources.pool,
            lambda connection: task_registry.record_outcome(
                connection, task_id=task_id, state=state, result=result, error=error
            ),
            retry_seconds=self._settings.database_retry_seconds,
            what="task outcome",
        )

    async def _run_body(
        self,
        body: TaskBody,
        *,
        resources: Resources,
        task: TaskContract,
        task_id: str,
        deadline_seconds: float,
        progress_sink: ProgressCallback,
    ) -> Any:
        task_name = task.name
        if await resources.redis.exists(cancel_key(task_id)):
            raise TaskCancelled(task_id)
        ctx = TaskContext(
            task_id=task_id,
            task_name=task_name,
            settings=self._settings,
            clock=self._clock,
            session=resources.session,
            pool=resources.pool,
            redis=resources.redis,
            publisher=resources.publisher,
            progress_sink=progress_sink,
        )
        work = asyncio.ensure_future(body(ctx, task))
        watcher = asyncio.ensure_future(
            _watch_cancel_flag_and_heartbeat(resources.redis, resources.pool, task_id)
        )
        started = time.monotonic()
        try:
            done, _ = await asyncio.wait(
                {work, watcher}, timeout=deadline_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if work in done:
                # A body that saw the cancel flag before the watcher did (a fan-out checks it
                # before each write) ends with its own exception: that is still a cancel.
                if work.exception() is None or not await _cancel_flag_set(resources.redis, task_id):
                    return work.result()
                cancelled = True
            else:
                work.cancel()
                try:
                    await work
                except (asyncio.CancelledError, Exception) as exc:  # noqa: BLE001
                    # Whatever the body raises while it is being stopped is the stop's doing.
                    if not isinstance(exc, asyncio.CancelledError):
                        log.info("body raised while stopping", error=repr(exc))
                cancelled = watcher in done
            if cancelled:
                log.info("task cancelled", seconds=round(time.monotonic() - started, 3))
                raise TaskCancelled(task_id)
            raise TaskDeadlineExceeded(
                f"{task_name} exceeded its {deadline_seconds:.0f} s deadline"
            )
        finally:
            watcher.cancel()
            if not work.done():
                work.cancel()

    async def aclose(self) -> None:
        """Close the shared resources (on the loop)."""
        if self._resources is None:
            return
        resources, self._resources = self._resources, None
        await resources.session.close()
        await resources.pool.close()
        await resources.redis.aclose()
        resources.publisher.close()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close resources and stop the loop thread; best effort at process exit."""
        if self._loop is None or self._pid != os.getpid():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)


async def _cancel_flag_set(redis_client: aioredis.Redis, task_id: str) -> bool:
    """Whether the task was asked to stop; False when Redis cannot say."""
    try:
        return bool(await redis_client.exists(cancel_key(task_id)))
    except (aioredis.RedisError, OSError) as exc:
        log.warning("cancel flag check failed", error=str(exc))
        return False


async def _watch_cancel_flag_and_heartbeat(
    redis_client: aioredis.Redis, pool: asyncpg.Pool, task_id: str
) -> None:
    """Return once the task's cancel flag appears; heartbeat the registry meanwhile.

    Brief Redis or Postgres errors are logged and tolerated.
    """
    key = cancel_key(task_id)
    last_beat = time.monotonic()
    while True:
        await asyncio.sleep(CANCEL_POLL_SECONDS)
        try:
            if await redis_client.exists(key):
                return
        except (aioredis.RedisError, OSError) as exc:
            log.warning("cancel flag check failed", error=str(exc))
        if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
            last_beat = time.monotonic()
            try:
                async with pool.acquire(timeout=HEARTBEAT_SECONDS) as connection:
                    await task_registry.heartbeat(connection, task_id=task_id)
            except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                log.warning("heartbeat failed", error=str(exc))
