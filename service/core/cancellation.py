"""Cooperative cancellation: a Redis flag per task that the worker's runtime polls."""

from __future__ import annotations

import redis.asyncio as aioredis

from service.core.redis_keys import cancel_key

CANCEL_FLAG_TTL_SECONDS = 86_400


async def request_cancel(redis_client: aioredis.Redis, task_id: str) -> None:
    """Ask a running (or not yet started) task to stop; its runner notices within ~0.2 s."""
    await redis_client.set(cancel_key(task_id), "1", ex=CANCEL_FLAG_TTL_SECONDS)
