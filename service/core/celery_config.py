"""The Celery application: Redis broker and backend, JSON only, at-least-once delivery.

`create_celery_app(settings)` is used both by workers (which then register
task bodies) and by publishers (the API, the scheduler), which only need
`send_task` by name and so never import task code.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from kombu.entity import Queue

from service.core.broker_transport import TRANSPORT_PATH as PUBLISHER_TRANSPORT
from service.core.contracts import ALL_QUEUES, CONTRACTS, QUEUE_MARKET_DATA
from service.core.settings import Settings

_REDIS_SOCKET_OPTIONS: dict[str, Any] = {
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 25,
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting findash relies on, derived from `settings`."""
    transport: dict[str, Any] = {
        "visibility_timeout": settings.celery_visibility_timeout,
        **_REDIS_SOCKET_OPTIONS,
    }
    return {
        "broker_url": settings.celery_broker_url,
        "result_backend": settings.celery_result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_retry_on_worker_lost": True,
        "task_reject_on_worker_lost": False,
        "worker_prefetch_multiplier": 1,
        # STARTED lives in the task registry; a result-backend write before each body would
        # only add a Redis round trip and a way for a backend outage to fail the task.
        "task_track_started": False,
        "task_time_limit": settings.celery_task_time_limit,
        "task_soft_time_limit": settings.celery_soft_time_limit,
        "result_expires": settings.celery_result_expires,
        "result_extended": True,
        "broker_transport_options": transport,
        "result_backend_transport_options": dict(_REDIS_SOCKET_OPTIONS),
        "redis_socket_timeout": 30,
        "redis_socket_connect_timeout": 5,
        "redis_socket_keepalive": True,
        "redis_backend_health_check_interval": 25,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        "broker_pool_limit": 16,
        "broker_pool_acquire_timeout": 1.0,
        "task_publish_retry": True,
        "task_publish_retry_policy": {
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_max_tasks_per_child": 1000,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "task_default_queue": QUEUE_MARKET_DATA,
        "task_queues": [Queue(name) for name in ALL_QUEUES],  # type: ignore[no-untyped-call]
        # I/O-bound work (many concurrent HTTP requests) and CPU-bound work (analytics) run on
        # separate queues, so a long report never delays a price update. Publishers also pass
        # each contract's queue explicitly; these routes serve `send_task` by name (Flower).
        "task_routes": {task.name: {"queue": task.queue} for task in CONTRACTS},
        "timezone": "UTC",
        "enable_utc": True,
    }


def create_celery_app(settings: Settings) -> Celery:
    """A configured Celery app with no tasks registered (publishers use `send_task`)."""
    app = Celery("findash", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def create_publisher_app(settings: Settings) -> Celery:
    """The app publishers (API, scheduler) send with: the shared configuration without a
    result backend.

    Publishers never read Celery results (the task registry answers status). With the Redis
    backend configured, every `send_task` would subscribe the process to that task's result
    channel until someone calls `.get()`, and retry reconnecting inside `send_task` when
    Redis is down. Workers still store results under their own configuration.
    On a plain `redis://` broker the publisher also reuses its Redis clients
    (`service.core.broker_transport`); `rediss://` and Sentinel URLs keep kombu's own transport.
    """
    app = create_celery_app(settings)
    app.conf.result_backend = "disabled"
    if urlsplit(settings.celery_broker_url).scheme == "redis":
        app.conf.broker_transport = PUBLISHER_TRANSPORT
    return app
