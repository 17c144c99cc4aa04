"""Celery task registration: each task is a thin sync shell around an async body."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore

from service.logs import get_logger
from workers.cleanup import cleanup
from workers.demo import demo_fetch
from workers.runtime import AsyncRuntime, TaskBody, TaskCancelled
from workers.schedule.probe import scheduler_probe

log = get_logger(__name__)


def register_async_task(app: Celery, runtime: AsyncRuntime, *, name: str, body: TaskBody) -> Task:
    """Register `body` (an `async def body(ctx, **kwargs)`) as Celery task `name`."""

    @app.task(name=name, bind=True)  # type: ignore[untyped-decorator]
    def run(self: Task, **kwargs: Any) -> Any:
        task_id = self.request.id

        def report(current: int, total: int, message: str) -> None:
            # Runs in a helper thread, where Celery's thread-local request is empty.
            self.update_state(
                task_id=task_id,
                state="PROGRESS",
                meta={"current": current, "total": total, "message": message},
            )

        try:
            return runtime.run_task(
                body,
                task_id=task_id,
                task_name=name,
                kwargs=kwargs,
                deadline_seconds=app.conf.task_soft_time_limit,
                progress_sink=report,
            )
        except TaskCancelled:
            self.backend.mark_as_revoked(task_id, reason="cancelled", request=self.request)
            raise Ignore() from None

    return run


def register_tasks(app: Celery, runtime: AsyncRuntime) -> None:
    """Register every findash task on `app`."""
    register_async_task(app, runtime, name="demo_fetch", body=demo_fetch)
    register_async_task(app, runtime, name="cleanup", body=cleanup)
    register_async_task(app, runtime, name="scheduler_probe", body=scheduler_probe)
