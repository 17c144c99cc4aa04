"""Worker liveness for `/tasks/workers`: each worker stamps a Redis key on every heartbeat."""

from __future__ import annotations

import time
from typing import Any

import redis

from service.core import redis_clients
from service.core.redis_connection import RedisEndpoint
from service.core.redis_keys import (
    WORKER_HEARTBEAT_TTL_SECONDS,
    WORKERS_ALIVE,
    worker_heartbeat_key,
)

HEARTBEAT_TTL_SECONDS = WORKER_HEARTBEAT_TTL_SECONDS


class HeartbeatRecorder:
    """Connected to Celery's `heartbeat_sent` signal in the worker's main process."""

    def __init__(self, endpoint: RedisEndpoint) -> None:
        self._endpoint = endpoint
        self._client: redis.Redis | None = None

    def __call__(self, sender: Any, **_: Any) -> None:
        """Stamp this worker's key; a Redis hiccup only costs one stamp."""
        if self._client is None:
            # It runs on the worker's consumer loop: one quick reconnect, never a long wait.
            self._client = redis_clients.sync_client(
                self._endpoint, budget_seconds=0.2, socket_timeout=1, connect_timeout=1
            )
        try:
            now = time.time()
            hostname = sender.eventer.hostname
            pipe = self._client.pipeline(transaction=False)
            pipe.set(worker_heartbeat_key(hostname), now, ex=HEARTBEAT_TTL_SECONDS)
            pipe.zadd(WORKERS_ALIVE, {hostname: now})
            pipe.zremrangebyscore(WORKERS_ALIVE, "-inf", now - HEARTBEAT_TTL_SECONDS)
            pipe.execute()
        except (redis.RedisError, OSError):
            self._client = None
