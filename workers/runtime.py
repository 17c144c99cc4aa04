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
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from service.database import create_pool
from service.logs import get_logger
from service.settings import Settings

log = get_logger(__name__)

CANCEL_KEY_PREFIX = "findash:cancel:"
CANCEL_POLL_SECONDS = 0.2
CANCEL_FLAG_TTL_SECONDS = 86_400

ProgressCallback = Callable[[int, int, str], None]


class TaskCancelled(Exception):
    """The task was asked to stop and its coroutine was cancelled."""


class TaskDeadlineExceeded(Exception):
    """The task body ran past its deadline and was cancelled."""


def cancel_key(task_id: str) -> str:
    """The Redis key whose presence asks task `task_id` to stop."""
    return f"{CANCEL_KEY_PREFIX}{task_id}"


async def request_cancel(redis_client: aioredis.Redis, task_id: str) -> None:
    """Ask a running (or not yet started) task to stop; its runner notices within ~0.2 s."""
    await redis_client.set(cancel_key(task_id), "1", ex=CANCEL_FLAG_TTL_SECONDS)


@dataclass(frozen=True, slots=True)
class Resources:
    """The I/O resources one worker process shares between all of its tasks."""

    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    redis: aioredis.Redis


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a task body receives: its identity, settings, shared I/O and a progress reporter."""

    task_id: str
    task_name: str
    settings: Settings
    session: aiohttp.ClientSession
    pool: asyncpg.Pool
    redis: aioredis.Redis
    progress_sink: ProgressCallback

    async def report_progress(self, *, current: int, total: int, message: str = "") -> None:
        """Publish `{current, total, message}` as the task's PROGRESS state, off the loop."""
        await asyncio.to_thread(self.progress_sink, current, total, message)


TaskBody = Callable[..., Coroutine[Any, Any, Any]]


class AsyncRuntime:
    """One event loop thread and one set of shared resources per worker process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
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
                redis_client = aioredis.Redis.from_url(
                    settings.redis_url,
                    socket_timeout=10,
                    socket_connect_timeout=5,
                    health_check_interval=25,
                )
                self._resources = Resources(session=session, pool=pool, redis=redis_client)
                log.info("worker resources opened", pid=os.getpid())
        return self._resources

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        """Schedule `coroutine` on this process's loop from any other thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run_task(
        self,
        body: TaskBody,
        *,
        task_id: str,
        task_name: str,
        kwargs: dict[str, Any],
        deadline_seconds: float,
        progress_sink: ProgressCallback,
    ) -> Any:
        """Run `body(ctx, **kwargs)` on the loop and block this (Celery) thread for its result.

        Raises `TaskCancelled` when the task was asked to stop, and
        `TaskDeadlineExceeded` when it ran past `deadline_seconds`.
        """
        future = self.submit(
            self._supervise(
                body,
                task_id=task_id,
                task_name=task_name,
                kwargs=kwargs,
                deadline_seconds=deadline_seconds,
                progress_sink=progress_sink,
            )
        )
        try:
            return future.result()
        except BaseException:
            # e.g. Celery's SoftTimeLimitExceeded raised in this thread: stop the coroutine too.
            future.cancel()
            raise

    async def _supervise(
        self,
        body: TaskBody,
        *,
        task_id: str,
        task_name: str,
        kwargs: dict[str, Any],
        deadline_seconds: float,
        progress_sink: ProgressCallback,
    ) -> Any:
        resources = await self.resources()
        if await resources.redis.exists(cancel_key(task_id)):
            raise TaskCancelled(task_id)
        ctx = TaskContext(
            task_id=task_id,
            task_name=task_name,
            settings=self._settings,
            session=resources.session,
            pool=resources.pool,
            redis=resources.redis,
            progress_sink=progress_sink,
        )
        work = asyncio.ensure_future(body(ctx, **kwargs))
        watcher = asyncio.ensure_future(_watch_cancel_flag(resources.redis, task_id))
        started = time.monotonic()
        try:
            done, _ = await asyncio.wait(
                {work, watcher}, timeout=deadline_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            if work in done:
                return work.result()
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            if watcher in done:
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

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close resources and stop the loop thread; best effort at process exit."""
        if self._loop is None or self._pid != os.getpid():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)


async def _watch_cancel_flag(redis_client: aioredis.Redis, task_id: str) -> None:
    """Return once the task's cancel flag appears; tolerate brief Redis errors."""
    key = cancel_key(task_id)
    while True:
        await asyncio.sleep(CANCEL_POLL_SECONDS)
        try:
            if await redis_client.exists(key):
                return
        except (aioredis.RedisError, OSError) as exc:
            log.warning("cancel flag check failed", error=str(exc))


def run_sync(awaitable_factory: Callable[[], Awaitable[Any]], runtime: AsyncRuntime) -> Any:
    """Run a small coroutine on the runtime's loop from a sync caller and return its result."""

    async def call() -> Any:
        return await awaitable_factory()

    return runtime.submit(call()).result()
