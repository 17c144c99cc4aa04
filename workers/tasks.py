"""Which body runs each task contract, and the Celery shell around every body.

Adding a task is one contract in `service.core.contracts` plus one body, paired here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore

from service.core import contracts as c
from workers.analytics import (
    calculate_portfolio_performance,
    create_portfolio_snapshot,
    generate_portfolio_report,
)
from workers.maintenance import cleanup, scheduler_probe
from workers.market_data import (
    demo_fetch,
    fetch_asset_info,
    fetch_market_data,
    fetch_market_data_chunk,
    store_session_closes,
    update_portfolio_prices,
)
from workers.metrics import count_task
from workers.runtime import (
    AsyncRuntime,
    ClaimFailed,
    TaskCancelled,
    TaskContext,
    TaskFailed,
    TaskSkipped,
)

# A copy whose claim failed (Postgres unreachable or the row locked) is sent again after
# 1, 2, 4, 8, 15, 15… s; past the last try the registry row stays PENDING until the sweep
# ends it "never started" (service.core.task_registry.fail_never_started).
CLAIM_RETRIES = 10
CLAIM_RETRY_MAX_DELAY_SECONDS = 15

# `async def body(ctx, task) -> result`, where `task` is the decoded contract.
Body = Callable[[TaskContext, Any], Coroutine[Any, Any, Any]]

BODIES: Mapping[type[c.TaskContract], Body] = {
    c.FetchMarketData: fetch_market_data,
    c.FetchMarketDataChunk: fetch_market_data_chunk,
    c.UpdatePortfolioPrices: update_portfolio_prices,
    c.StoreSessionCloses: store_session_closes,
    c.FetchAssetInfo: fetch_asset_info,
    c.CalculatePortfolioPerformance: calculate_portfolio_performance,
    c.CreatePortfolioSnapshot: create_portfolio_snapshot,
    c.GeneratePortfolioReport: generate_portfolio_report,
    c.Cleanup: cleanup,
    c.SchedulerProbe: scheduler_probe,
    c.DemoFetch: demo_fetch,
}


def register_async_task(
    app: Celery, runtime: AsyncRuntime, *, contract: type[c.TaskContract], body: Body
) -> Task:
    """Register `body` as Celery task `contract.name`; the message is decoded into the
    contract before the body runs, so arguments that break it fail the task unrun."""

    # A task whose worker process died is retried (task_retry_on_worker_lost) after this.
    @app.task(name=contract.name, bind=True, default_retry_delay=1, throws=(TaskFailed,))  # type: ignore[untyped-decorator]
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
                contract=contract,
                task_id=task_id,
                kwargs=kwargs,
                deadline_seconds=app.conf.task_soft_time_limit,
                progress_sink=report,
                delivery=self.request.retries or 0,
                worker=f"{self.request.hostname}:{os.getpid()}",
            )
        except TaskSkipped:
            raise Ignore() from None
        except ClaimFailed as exc:
            retries = self.request.retries or 0
            raise self.retry(
                exc=exc,
                countdown=min(2**retries, CLAIM_RETRY_MAX_DELAY_SECONDS),
                max_retries=CLAIM_RETRIES,
            ) from exc
        except TaskCancelled:
            count_task(contract.name, "REVOKED")
            self.backend.mark_as_revoked(task_id, reason="cancelled", request=self.request)
            raise Ignore() from None

    return run


def register_tasks(
    app: Celery, runtime: AsyncRuntime, *, bodies: Mapping[type[c.TaskContract], Body] = BODIES
) -> None:
    """Register a Celery task for every contract in `bodies`."""
    for contract, body in bodies.items():
        register_async_task(app, runtime, contract=contract, body=body)
