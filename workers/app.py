"""The worker's Celery app: this process's async runtime, the task bodies and Celery's signals
(logging, task ids, runtime start and stop, heartbeats)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from celery import Celery, Task
from celery.signals import (
    heartbeat_sent,
    setup_logging,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    task_revoked,
    task_success,
    task_unknown,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from service.core.celery_config import create_celery_app
from service.core.clock import clock_from_settings, exchange_today
from service.core.contracts import TaskContract
from service.core.logs import configure_logging, get_logger
from service.core.metrics_exposition import serve_multiprocess, worker_metrics_dir
from service.core.redis_connection import redis_endpoint
from service.core.settings import Settings
from service.core.trading_calendar import load_holiday_tables
from workers import metrics
from workers.heartbeat import HeartbeatRecorder
from workers.runtime import AsyncRuntime
from workers.tasks import BODIES, Body, register_tasks
from workers.unknown_task import UnknownTaskRecorder

log = get_logger(__name__)


def _bind_task_ids(task_id: str, task: Task, **_: Any) -> None:
    headers = getattr(task.request, "headers", None) or {}
    request_id = getattr(task.request, "request_id", None) or headers.get("request_id")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        task_id=task_id, task_name=task.name, **({"request_id": request_id} if request_id else {})
    )


def _unbind_task_ids(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


def create_worker_app(
    settings: Settings,
    *,
    bodies: Mapping[type[TaskContract], Body] = BODIES,
    serve_metrics: bool = False,
) -> Celery:
    """The worker's Celery app running `bodies`, with this process's runtime and signals.

    With `serve_metrics`, the main process serves the children's metrics on
    `WORKER_METRICS_PORT` (the multiprocess directory must already be prepared).
    Call it once per process: Celery's signals are process-wide.
    """
    configure_logging(service="worker", level=settings.log_level, fmt=settings.log_format)
    # Before the pool forks, so every child inherits the tables instead of building them.
    load_holiday_tables(around=exchange_today(clock_from_settings(settings)))
    app = create_celery_app(settings)
    runtime = AsyncRuntime(settings)
    register_tasks(app, runtime, bodies=bodies)

    def setup(**_: Any) -> None:
        # Connecting this signal stops Celery installing its own handlers.
        configure_logging(service="worker", level=settings.log_level, fmt=settings.log_format)

    def start_runtime(**_: Any) -> None:
        runtime.loop  # noqa: B018 - starts this child's loop thread; resources open lazily

    def stop_runtime(**_: Any) -> None:
        runtime.shutdown()

    setup_logging.connect(setup, weak=False)
    worker_process_init.connect(start_runtime, weak=False)
    worker_process_shutdown.connect(stop_runtime, weak=False)
    task_prerun.connect(_bind_task_ids, weak=False)
    task_postrun.connect(_unbind_task_ids, weak=False)
    heartbeat_sent.connect(HeartbeatRecorder(redis_endpoint(settings)), weak=False)
    task_unknown.connect(UnknownTaskRecorder(settings), weak=False)
    _connect_metrics(settings, serve=serve_metrics)
    return app


def _connect_metrics(settings: Settings, *, serve: bool) -> None:
    timer = metrics.TaskTimer()
    task_prerun.connect(timer.started, weak=False)
    task_postrun.connect(timer.ended, weak=False)
    task_success.connect(metrics.on_success, weak=False)
    task_failure.connect(metrics.on_failure, weak=False)
    task_retry.connect(metrics.on_retry, weak=False)
    task_revoked.connect(metrics.on_revoked, weak=False)
    if not serve:
        return
    worker_process_shutdown.connect(metrics.mark_dead_in(worker_metrics_dir(settings)), weak=False)

    def start_server(**_: Any) -> None:
        # In the main process, before the pool forks: one endpoint for the whole instance.
        metrics.breakers_closed(settings.market_data_providers)
        serve_multiprocess(host=settings.metrics_host, port=settings.worker_metrics_port)
        log.info(
            "worker metrics served",
            host=settings.metrics_host,
            port=settings.worker_metrics_port,
            directory=str(worker_metrics_dir(settings)),
        )

    worker_init.connect(start_server, weak=False)
