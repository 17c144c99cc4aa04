"""Redis clients that survive a Redis restart: every findash client is built here.

redis-py 8 clients built with `from_url` retry nothing: after a restart the first command
on each pooled connection fails with "Connection closed by server". These clients retry
connection errors and timeouts with exponential backoff until a time budget is spent, so
a stale connection costs one quick reconnect and a short outage is ridden out. The API
uses a budget well under its 2 s answer bound (a request then fails fast into a 503);
workers use `REDIS_RETRY_SECONDS`, long enough to wait out a restart mid-task.

The budget is a deadline, not a count of tries. redis-py retries at two levels (the
command, and the connect inside it) and takes a connection from the pool outside the
command's retry, so a count of tries either gives up after one inner connect loop (a few
seconds) or multiplies into minutes. Here the outermost retry in a task sets the deadline
and every nested retry honours it.

Retrying a write whose reply was lost can apply it twice; findash's Redis writes are
flags, leases, rate-limit slots and counters of advisory progress, where that is harmless.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from service.core.redis_connection import RedisEndpoint

T = TypeVar("T")

RETRIED_ERRORS: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0
API_RETRY_SECONDS = 0.5
HEALTH_CHECK_SECONDS = 25
ASYNC_POOL_CONNECTIONS = 8
# Reported to redis-py (it only uses the count for metrics); the deadline is what stops.
_NOMINAL_RETRIES = 1000

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "findash_redis_retry_deadline", default=None
)


def _backoff(budget_seconds: float) -> ExponentialBackoff:
    cap = min(BACKOFF_CAP_SECONDS, max(budget_seconds / 4, 0.01))
    return ExponentialBackoff(cap=cap, base=min(BACKOFF_BASE_SECONDS, cap / 2))


def _permanent(error: Exception) -> bool:
    # A wrong password or ACL user is a ConnectionError to redis-py, but no retry mends it.
    return isinstance(error, AuthenticationError)


def _call_failure(fail: Callable[..., Any], error: Exception, failures: int, counted: bool) -> Any:
    return fail(error, failures) if counted else fail(error)


class BudgetRetry(Retry):
    """A redis-py `Retry` that retries connection errors until `budget_seconds` after the
    outermost retry in this thread began."""

    def __init__(self, *, budget_seconds: float) -> None:
        super().__init__(_backoff(budget_seconds), _NOMINAL_RETRIES, RETRIED_ERRORS)
        self.budget_seconds = budget_seconds

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """Run `do`, retrying supported errors with backoff until the deadline."""
        token = None
        if _deadline.get() is None:
            token = _deadline.set(time.monotonic() + self.budget_seconds)
        try:
            failures = 0
            while True:
                try:
                    return do()
                except self._supported_errors as error:
                    if _permanent(error) or (is_retryable and not is_retryable(error)):
                        raise
                    failures += 1
                    _call_failure(fail, error, failures, with_failure_count)
                    delay = self._backoff.compute(failures)
                    if time.monotonic() + delay > (_deadline.get() or 0.0):
                        raise
                    time.sleep(delay)
        finally:
            if token is not None:
                _deadline.reset(token)


class AsyncBudgetRetry(AsyncRetry):
    """`BudgetRetry` for asyncio clients (the deadline is per asyncio task)."""

    def __init__(self, *, budget_seconds: float) -> None:
        super().__init__(_backoff(budget_seconds), _NOMINAL_RETRIES, RETRIED_ERRORS)  # type: ignore[arg-type]
        self.budget_seconds = budget_seconds

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """Await `do`, retrying supported errors with backoff until the deadline."""
        token = None
        if _deadline.get() is None:
            token = _deadline.set(time.monotonic() + self.budget_seconds)
        try:
            failures = 0
            while True:
                try:
                    return await do()
                except self._supported_errors as error:
                    if _permanent(error) or (is_retryable and not is_retryable(error)):
                        raise
                    failures += 1
                    await _call_failure(fail, error, failures, with_failure_count)
                    delay = self._backoff.compute(failures)
                    if time.monotonic() + delay > (_deadline.get() or 0.0):
                        raise
                    await asyncio.sleep(delay)
        finally:
            if token is not None:
                _deadline.reset(token)


def retry_policy(*, budget_seconds: float) -> BudgetRetry:
    """A redis-py `Retry` on connection errors and timeouts for `budget_seconds`."""
    return BudgetRetry(budget_seconds=budget_seconds)


def async_retry_policy(*, budget_seconds: float) -> AsyncBudgetRetry:
    """`retry_policy` for asyncio clients (redis-py keeps a separate class: the synchronous
    one silently retries nothing when handed a coroutine)."""
    return AsyncBudgetRetry(budget_seconds=budget_seconds)


def async_client(
    endpoint: RedisEndpoint, *, budget_seconds: float, socket_timeout: float, connect_timeout: float
) -> aioredis.Redis:
    """An asyncio client on `endpoint` that reconnects and retries for about `budget_seconds`.

    Its pool holds at most ASYNC_POOL_CONNECTIONS connections, so a burst of concurrent
    callers (a fetch's symbols all asking the rate limiter at once) queues for a connection
    instead of opening one each and keeping them for the life of the process. A caller
    waits for a connection for as long as a command may retry."""
    return _async_connect(
        endpoint,
        pool_wait_seconds=budget_seconds + connect_timeout + socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=async_retry_policy(budget_seconds=budget_seconds),
        retry_on_error=list(RETRIED_ERRORS),
    )


def sync_client(
    endpoint: RedisEndpoint, *, budget_seconds: float, socket_timeout: float, connect_timeout: float
) -> redis.Redis:
    """The synchronous twin of `async_client`."""
    return _sync_connect(
        endpoint,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_SECONDS,
        retry=retry_policy(budget_seconds=budget_seconds),
        retry_on_error=list(RETRIED_ERRORS),
    )


def _sentinel_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    # Only the timeouts reach the sentinels: the URL's credentials are the master's.
    return {key: options[key] for key in ("socket_timeout", "socket_connect_timeout")}


class _AsyncSentinelMaster(aioredis.Redis):
    """A client on a Sentinel-managed master that also closes its connections to the
    sentinels when closed."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the master's pool and the sentinel clients."""
        await super().aclose(close_connection_pool)
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            await sentinel.aclose()


class _SentinelMaster(redis.Redis):
    """The synchronous twin of `_AsyncSentinelMaster`."""

    def close(self) -> None:
        """Close the master's pool and the sentinel clients."""
        super().close()
        for sentinel in self.connection_pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
            sentinel.close()


def _async_connect(
    endpoint: RedisEndpoint, *, pool_wait_seconds: float, **options: Any
) -> aioredis.Redis:
    """An asyncio client with connection `options` on a redis://, rediss:// (verified TLS)
    or sentinel:// (the current master, rediscovered after a failover) endpoint. Sentinel
    clients keep redis-py's own (unbounded) master pool, which rediscovers the master."""
    if endpoint.sentinels:
        sentinel = aioredis.Sentinel(  # type: ignore[no-untyped-call]
            list(endpoint.sentinels),
            sentinel_kwargs=_sentinel_kwargs(options),
            **endpoint.master_options(),
            **options,
        )
        master: aioredis.Redis = sentinel.master_for(
            endpoint.master_name, redis_class=_AsyncSentinelMaster
        )
        return master
    tls = endpoint.tls.options() if endpoint.tls is not None else {}
    pool = aioredis.BlockingConnectionPool.from_url(
        endpoint.url,
        max_connections=ASYNC_POOL_CONNECTIONS,
        timeout=pool_wait_seconds,
        **tls,
        **options,
    )
    return aioredis.Redis.from_pool(pool)


def _sync_connect(endpoint: RedisEndpoint, **options: Any) -> redis.Redis:
    """The synchronous twin of `_async_connect`."""
    if endpoint.sentinels:
        sentinel = redis.Sentinel(  # type: ignore[no-untyped-call]
            list(endpoint.sentinels),
            sentinel_kwargs=_sentinel_kwargs(options),
            **endpoint.master_options(),
            **options,
        )
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            endpoint.master_name, redis_class=_SentinelMaster
        )
        return master
    tls = endpoint.tls.options() if endpoint.tls is not None else {}
    return redis.Redis.from_url(endpoint.url, **tls, **options)
