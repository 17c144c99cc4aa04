"""Composition root of a worker process: `celery -A workers.worker worker`.

Reads settings once, builds the Celery app and this process's async runtime,
registers the tasks and wires logging and task ids into Celery's signals.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from celery.signals import (
    heartbeat_sent,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)

from service.core.celery_config import create_celery_app
from service.core.logs import configure_logging
from service.core.settings import Settings
from workers.heartbeat import HeartbeatRecorder
from workers.runtime import AsyncRuntime
from workers.tasks import register_tasks

settings = Settings.from_env()
configure_logging(service="worker", level=settings.log_level, fmt=settings.log_format)
app = create_celery_app(settings)
runtime = AsyncRuntime(settings)
register_tasks(app, runtime)


def _setup_logging(**_: Any) -> None:
    # Connecting this signal stops Celery installing its own handlers.
    configure_logging(service="worker", level=settings.log_level, fmt=settings.log_format)


def _start_runtime(**_: Any) -> None:
    runtime.loop  # noqa: B018 - starts this child's loop thread; resources open lazily


def _stop_runtime(**_: Any) -> None:
    runtime.shutdown()


def _bind_task_ids(task_id: str, task: Task, **_: Any) -> None:
    headers = getattr(task.request, "headers", None) or {}
    request_id = getattr(task.request, "request_id", None) or headers.get("request_id")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        task_id=task_id, task_name=task.name, **({"request_id": request_id} if request_id else {})
    )


def _unbind_task_ids(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


setup_logging.connect(_setup_logging, weak=False)
worker_process_init.connect(_start_runtime, weak=False)
worker_process_shutdown.connect(_stop_runtime, weak=False)
task_prerun.connect(_bind_task_ids, weak=False)
task_postrun.connect(_unbind_task_ids, weak=False)
heartbeat_sent.connect(HeartbeatRecorder(settings.redis_url), weak=False)
