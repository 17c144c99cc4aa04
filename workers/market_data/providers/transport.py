"""HTTP for provider adapters: shared limiter, concurrency cap and error classification.

Every request waits for a slot from the provider's Redis rate limiter and a
place under its per-process concurrency cap. Timeouts, connection errors,
5xx and 429 become transient `ProviderError`s; any other status is returned
for the adapter to interpret in its provider's terms.

A 429's retry waits its Retry-After (`backoff.py`). When 429s come in a row (three
answers running), the provider's rate is being exceeded and the shared limiter is paused
for Retry-After, so every process backs off; a 429 among successes delays only its own
request instead of the whole provider.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from workers import metrics
from workers.market_data.providers.base import ErrorKind, ProviderError
from workers.market_data.rate_limiter import RedisRateLimiter

DEFAULT_RETRY_AFTER_SECONDS = 1.0
THROTTLED_IN_A_ROW = 3
MAX_RETRY_AFTER_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Reply:
    """A provider's answer: status, body and headers."""

    status: int
    body: bytes
    headers: CIMultiDictProxy[str]


def throttled_in_a_row(previous: int, *, status: int) -> int:
    """How many answers running have been 429, after one with `status`."""
    return previous + 1 if status == 429 else 0


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped; None if absent."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_SECONDS)


def classify_status(status: int, *, provider: str, retry_after: float | None) -> None:
    """Raise the transient error a 429 or 5xx means; other statuses are the adapter's."""
    if status == 429:
        raise ProviderError(
            ErrorKind.TRANSIENT,
            f"{provider}: rate limited (429)",
            provider=provider,
            retry_after=DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after,
            throttled=True,
        )
    if status >= 500:
        raise ProviderError(
            ErrorKind.TRANSIENT,
            f"{provider}: server error ({status})",
            provider=provider,
            retry_after=retry_after,
        )


class Transport:
    """GET requests for one provider over the worker's shared session."""

    def __init__(
        self,
        *,
        provider: str,
        session: aiohttp.ClientSession,
        limiter: RedisRateLimiter,
        concurrency: int,
    ) -> None:
        self.provider = provider
        self._session = session
        self._limiter = limiter
        self._slots = asyncio.Semaphore(concurrency)
        self._throttled_in_a_row = 0

    async def get(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """GET `url` under the limits; raise transient errors, return everything else."""
        async with self._slots:
            waited = await self._limiter.acquire()
            metrics.RATE_LIMITER_WAIT.labels(provider=self.provider).observe(waited)
            try:
                async with self._session.get(url, params=params, headers=headers) as response:
                    body = await response.read()
                    reply = Reply(status=response.status, body=body, headers=response.headers)
            except TimeoutError:
                self._count("timeout")
                raise ProviderError(
                    ErrorKind.TRANSIENT, f"{self.provider}: timeout", provider=self.provider
                ) from None
            except aiohttp.ClientError as exc:
                self._count("error")
                raise ProviderError(
                    ErrorKind.TRANSIENT,
                    f"{self.provider}: connection error ({type(exc).__name__})",
                    provider=self.provider,
                ) from None
        self._count(metrics.provider_outcome(reply.status))
        retry_after = parse_retry_after(reply.headers.get("Retry-After"), now=datetime.now(UTC))
        self._throttled_in_a_row = throttled_in_a_row(self._throttled_in_a_row, status=reply.status)
        if self._throttled_in_a_row >= THROTTLED_IN_A_ROW:
            await self._limiter.pause(
                DEFAULT_RETRY_AFTER_SECONDS if retry_after is None else retry_after
            )
        classify_status(reply.status, provider=self.provider, retry_after=retry_after)
        return reply

    def _count(self, outcome: str) -> None:
        metrics.PROVIDER_REQUESTS.labels(provider=self.provider, outcome=outcome).inc()
