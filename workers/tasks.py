"""Celery task registration: each task is a thin sync shell around an async body."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore

from service.core.logs import get_logger
from workers.analytics.tasks import (
    calculate_portfolio_performance,
    create_portfolio_snapshot,
    generate_portfolio_report,
)
from workers.maintenance.cleanup import cleanup
from workers.maintenance.demo import demo_fetch
from workers.maintenance.probe import scheduler_probe
from workers.market_data.tasks import (
    fetch_asset_info,
    fetch_market_data,
    fetch_market_data_chunk,
    update_portfolio_prices,
)
from workers.runtime import AsyncRuntime, TaskBody, TaskCancelled, TaskSkipped

log = get_logger(__name__)


def register_async_task(app: Celery, runtime: AsyncRuntime, *, name: str, body: TaskBody) -> Task:
    """Register `body` (an `async def body(ctx, **kwargs)`) as Celery task `name`."""

    # A task whose worker process died is retried (task_retry_on_worker_lost) after this.
    @app.task(name=name, bind=True, default_retry_delay=1)  # type: ignore[untyped-decorator]
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
                delivery=self.request.retries or 0,
                worker=f"{self.request.hostname}:{os.getpid()}",
            )
        except TaskSkipped:
            raise Ignore() from None
        except TaskCancelled:
            self.backend.mark_as_revoked(task_id, reason="cancelled", request=self.request)
            raise Ignore() from None

    return run


def register_tasks(app: Celery, runtime: AsyncRuntime) -> None:
    """Register every findash task on `app`."""
    register_async_task(app, runtime, name="demo_fetch", body=demo_fetch)
    register_async_task(
        app, runtime, name="create_portfolio_snapshot", body=create_portfolio_snapshot
    )
    register_async_task(
        app, runtime, name="calculate_portfolio_performance", body=calculate_portfolio_performance
    )
    register_async_task(
        app, runtime, name="generate_portfolio_report", body=generate_portfolio_report
    )
    register_async_task(app, runtime, name="fetch_market_data", body=fetch_market_data)
    register_async_task(app, runtime, name="fetch_market_data_chunk", body=fetch_market_data_chunk)
    register_async_task(app, runtime, name="update_portfolio_prices", body=update_portfolio_prices)
    register_async_task(app, runtime, name="fetch_asset_info", body=fetch_asset_info)
    register_async_task(app, runtime, name="cleanup", body=cleanup)
    register_async_task(app, runtime, name="scheduler_probe", body=scheduler_probe)
