"""Redis clients that survive a Redis restart: every findash client is built here.

redis-py 8 clients built with `from_url` retry nothing: after a restart the first command
on each pooled connection fails with "Connection closed by server". These clients retry
connection errors and timeouts with exponential backoff until a time budget is spent, so
a stale connection costs one quick reconnect and a short outage is ridden out. The API
uses a budget well under its 2 s answer bound (a request then fails fast into a 503);
workers use `REDIS_RETRY_SECONDS`, long enough to wait out a restart mid-task.

Retrying a write whose reply was lost can apply it twice; findash's Redis writes are
flags, leases, rate-limit slots and counters of advisory progress, where that is harmless.
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

RETRIED_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
BACKOFF_BASE_SECONDS = 0.05
API_RETRY_SECONDS = 0.5
HEALTH_CHECK_SECONDS = 25


def _backoff(budget_seconds: float) -> tuple[ExponentialBackoff, int]:
    # redis-py retries the connect inside each command retry with the same policy, so the
    # worst case is about (retries + 2) rounds of backoff: each round gets that share.
    retries = 3 if budget_seconds < 5 else 6
    cap = budget_seconds / (retries + 2) / retries
    return ExponentialBackoff(cap=cap, base=min(BACKOFF_BASE_SECONDS, cap / 2)), retries


def retry_policy(*, budget_seconds: float) -> Retry:
    """A redis-py `Retry` on connection errors and timeouts over about `budget_seconds`."""
    backoff, retries = _backoff(budget_seconds)
    return Retry(backoff, retries, supported_errors=RETRIED_ERRORS)


def async_retry_policy(*, budget_seconds: float) -> AsyncRetry:
    """`retry_policy` for asyncio clients (redis-py keeps a separate class: the synchronous
    one silently retries nothing when handed a coroutine)."""
    backoff, retries = _backoff(budget_seconds)
    return AsyncRetry(backoff, retries, supported_errors=RETRIED_ERRORS)  # type: ignore[arg-type]


def async_client(
    url: str, *, budget_seconds: float, socket_timeout: float, connect_timeout: float
) -> aioredis.Redis:
    """An asyncio client on `url` that reconnects and retries for about `budget_seconds`."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=async_retry_policy(budget_seconds=budget_seconds),
        retry_on_error=list(RETRIED_ERRORS),
    )


def sync_client(
    url: str, *, budget_seconds: float, socket_timeout: float, connect_timeout: float
) -> redis.Redis:
    """The synchronous twin of `async_client`."""
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=retry_policy(budget_seconds=budget_seconds),
        retry_on_error=list(RETRIED_ERRORS),
    )
