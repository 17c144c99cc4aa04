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
from service.core.redis_connection import redis_endpoint
from service.core.settings import Settings

_REDIS_SOCKET_OPTIONS: dict[str, Any] = {
    "socket_timeout": 30,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 25,
}


def _backend_retry_policy(settings: Settings) -> dict[str, Any]:
    # kombu's `ensure` policy for result-backend reads and writes: back off up to 1 s a try
    # and keep trying for about REDIS_RETRY_SECONDS, so a restart never fails a result write.
    return {
        "max_retries": max(1, int(settings.redis_retry_seconds)),
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 1,
    }


def redis_connection_config(settings: Settings) -> dict[str, Any]:
    """Celery's TLS and Sentinel settings for the broker and result-backend URLs: verified
    TLS options for `rediss://` (Celery would otherwise connect with CERT_NONE) and the
    master's name for `sentinel://`."""
    config: dict[str, Any] = {}
    broker = redis_endpoint(settings, settings.celery_broker_url)
    backend = redis_endpoint(settings, settings.celery_result_backend)
    if broker.tls is not None:
        config["broker_use_ssl"] = broker.tls.options()
    if backend.tls is not None:
        config["redis_backend_use_ssl"] = backend.tls.options()
    if broker.sentinels:
        config["broker_transport_options"] = {"master_name": broker.master_name}
    if backend.sentinels:
        config["result_backend_transport_options"] = {"master_name": backend.master_name}
    return config


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting findash relies on, derived from `settings`."""
    connection = redis_connection_config(settings)
    transport: dict[str, Any] = {
        **connection.pop("broker_transport_options", {}),
        "visibility_timeout": settings.celery_visibility_timeout,
        # How often a worker looks for messages whose consumer died (unacked past the
        # visibility timeout): the restore sweep runs every second, scanning every
        # CELERY_UNACKED_RESTORE_SECONDS.
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": settings.celery_unacked_restore_seconds,
        **_REDIS_SOCKET_OPTIONS,
    }
    return {
        **connection,
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
        "result_backend_transport_options": {
            **connection.pop("result_backend_transport_options", {}),
            **_REDIS_SOCKET_OPTIONS,
            "retry_policy": _backend_retry_policy(settings),
        },
        "result_backend_always_retry": True,
        "result_backend_max_retries": max(1, int(settings.redis_retry_seconds)),
        "redis_socket_timeout": 30,
        "redis_socket_connect_timeout": 5,
        "redis_socket_keepalive": True,
        "redis_backend_health_check_interval": 25,
        "broker_connection_retry_on_startup": True,
        # A worker or scheduler that loses Redis reconnects for ever (backing off up to
        # 2 s a try) instead of exiting after 100 tries.
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "broker_channel_error_retry": True,
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
        # A broker outage must not kill running tasks: cancelled tasks wait for redelivery
        # until the visibility timeout (hours). Tasks keep running, their Redis clients
        # retry, and an ack the lost channel cannot deliver only causes a redelivery that
        # the task registry drops as a duplicate of a finished run.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
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
    # Celery's conf prefers a CELERY_RESULT_BACKEND environment variable over the setting;
    # the backend class wins over both, so the publisher never subscribes to results.
    app.backend_cls = "disabled"
    if urlsplit(settings.celery_broker_url).scheme == "redis":
        app.conf.broker_transport = PUBLISHER_TRANSPORT
    return app
