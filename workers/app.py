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
    task_postrun,
    task_prerun,
    task_unknown,
    worker_process_init,
    worker_process_shutdown,
)

from service.core.celery_config import create_celery_app
from service.core.clock import clock_from_settings, exchange_today
from service.core.contracts import TaskContract
from service.core.logs import configure_logging
from service.core.redis_connection import redis_endpoint
from service.core.settings import Settings
from service.core.trading_calendar import load_holiday_tables
from workers.heartbeat import HeartbeatRecorder
from workers.runtime import AsyncRuntime
from workers.tasks import BODIES, Body, register_tasks
from workers.unknown_task import UnknownTaskRecorder


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
    settings: Settings, *, bodies: Mapping[type[TaskContract], Body] = BODIES
) -> Celery:
    """The worker's Celery app running `bodies`, with this process's runtime and signals.

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
    return app
