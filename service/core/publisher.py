"""The one way findash publishes a task: a contract, sent without blocking the event loop.

Every sender uses it: the API, the scheduler's leader and the market-data fan-out.
kombu and redis-py publish synchronously and retry, so `send_task` runs in a worker
thread, at most `PUBLISH_CONCURRENCY` at a time, under a hard deadline: a dead broker
becomes a fast `BrokerUnavailable` (→ 503 in the API, a retried fire in the scheduler),
never a hung caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from celery import Celery

from service.core.contracts import TaskContract
from service.core.logs import get_logger

PUBLISH_CONCURRENCY = 16
log = get_logger(__name__)
T = TypeVar("T")


class BrokerUnavailable(Exception):
    """The broker did not accept the message within the deadline."""


class TaskPublisher:
    """Sends tasks by name with a bounded thread pool and a deadline."""

    def __init__(self, celery_app: Celery, *, timeout_seconds: float) -> None:
        self._app = celery_app
        self._timeout = timeout_seconds
        self._threads = ThreadPoolExecutor(PUBLISH_CONCURRENCY, thread_name_prefix="publish")

    async def _in_thread(self, call: Callable[[], T], *, deadline: float) -> T:
        # On timeout the thread finishes on its own; the request does not wait for it.
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(self._threads, call), deadline)

    def close(self) -> None:
        """Stop accepting work; running publishes finish in the background."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def publish(
        self,
        task: TaskContract,
        *,
        task_id: str,
        headers: dict[str, str] | None = None,
        expires_in: float | None = None,
        queue: str | None = None,
    ) -> None:
        """Send `task` to `queue` (default: its contract's) under `task_id`; raise
        `BrokerUnavailable` past the deadline. A message not started within `expires_in`
        seconds is discarded by the worker (relative, so a sender on a pinned clock cannot
        expire it by mistake)."""
        name = task.name

        def send() -> None:
            self._app.send_task(
                name,
                kwargs=task.kwargs(),
                queue=queue or task.queue,
                task_id=task_id,
                headers=headers or {},
                expires=expires_in,
                retry=True,
                retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2},
            )

        try:
            await self._in_thread(send, deadline=self._timeout)
        except TimeoutError:
            log.warning("publish timed out", task_name=name, task_id=task_id)
            raise BrokerUnavailable(
                f"the broker did not answer within {self._timeout:g} s"
            ) from None
        except (OSError, ConnectionError) as exc:
            raise BrokerUnavailable(str(exc)) from exc
        except Exception as exc:
            # kombu wraps connection failures in its own OperationalError.
            if type(exc).__name__ in {"OperationalError", "ConnectionError"}:
                raise BrokerUnavailable(str(exc)) from exc
            raise

    async def revoke(self, task_id: str) -> None:
        """Tell workers to drop `task_id` if it is still queued (best effort)."""

        def send() -> None:
            self._app.control.revoke(task_id)

        try:
            await self._in_thread(send, deadline=self._timeout)
        except Exception as exc:  # noqa: BLE001 - the registry already says REVOKED
            log.warning("revoke broadcast failed", task_id=task_id, error=str(exc))

    async def inspect_workers(self) -> dict[str, dict[str, Any]]:
        """Stats, active tasks and queues of every worker answering within 1 s."""

        def gather() -> dict[str, dict[str, Any]]:
            inspector = self._app.control.inspect(timeout=1.0)
            stats = inspector.stats() or {}
            active = inspector.active() or {}
            queues = inspector.active_queues() or {}
            return {
                host: {
                    "stats": stats.get(host, {}),
                    "active": active.get(host, []),
                    "queues": queues.get(host, []),
                }
                for host in set(stats) | set(active) | set(queues)
            }

        return await self._in_thread(gather, deadline=self._timeout + 3)
