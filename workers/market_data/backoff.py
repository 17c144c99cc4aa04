"""Retries with exponential backoff and full jitter, bounded in total time per call."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from workers.market_data.providers.base import ProviderError

T = TypeVar("T")
BASE_DELAY_SECONDS = 0.25
MAX_DELAY_SECONDS = 8.0


def backoff_delay(attempt: int, *, rng: random.Random, base: float, cap: float) -> float:
    """Full-jitter delay before retry `attempt` (0-based): uniform in [0, min(cap, base·2ⁿ)]."""
    return rng.uniform(0, min(cap, base * 2**attempt))


def next_delay(
    error: ProviderError, *, attempt: int, elapsed: float, budget: float, rng: random.Random
) -> float | None:
    """How long to wait before retrying after `error`, or None to give up.

    Permanent errors are never retried; a server's Retry-After is a floor; a
    retry that would end past the time budget is not attempted.
    """
    if not error.retryable:
        return None
    delay = backoff_delay(attempt, rng=rng, base=BASE_DELAY_SECONDS, cap=MAX_DELAY_SECONDS)
    if error.retry_after is not None:
        delay = max(delay, error.retry_after)
    if elapsed + delay >= budget:
        return None
    return delay


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    budget: float,
    rng: random.Random,
    on_retry: Callable[[ProviderError, float], None] | None = None,
) -> T:
    """Await `call()` until it succeeds, retrying transient `ProviderError`s within `budget` s."""
    started = time.monotonic()
    attempt = 0
    while True:
        try:
            return await call()
        except ProviderError as error:
            delay = next_delay(
                error,
                attempt=attempt,
                elapsed=time.monotonic() - started,
                budget=budget,
                rng=rng,
            )
            if delay is None:
                raise
            if on_retry is not None:
                on_retry(error, delay)
            await asyncio.sleep(delay)
            attempt += 1
