"""Cooperative cancellation: a Redis flag per task that the worker's runtime polls."""

from __future__ import annotations

import redis.asyncio as aioredis

CANCEL_KEY_PREFIX = "findash:cancel:"
CANCEL_FLAG_TTL_SECONDS = 86_400


def cancel_key(task_id: str) -> str:
    """The Redis key whose presence asks task `task_id` to stop."""
    return f"{CANCEL_KEY_PREFIX}{task_id}"


async def request_cancel(redis_client: aioredis.Redis, task_id: str) -> None:
    """Ask a running (or not yet started) task to stop; its runner notices within ~0.2 s."""
    await redis_client.set(cancel_key(task_id), "1", ex=CANCEL_FLAG_TTL_SECONDS)
