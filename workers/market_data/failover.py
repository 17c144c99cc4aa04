"""Calls to providers in failover order, each under its breaker and a retry budget.

For one symbol: try the first provider whose breaker allows it, retrying
transient failures with backoff within the budget; on a permanent failure,
an unknown symbol, an open circuit or an exhausted budget, go to the next
provider. Only when every provider failed does the symbol fail, with each
provider's reason.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import TypeVar

from service.core.logs import get_logger
from workers import metrics
from workers.market_data.backoff import call_with_retries, next_delay
from workers.market_data.circuit_breaker import BreakerState
from workers.market_data.providers.base import ErrorKind, ProviderError
from workers.market_data.providers.registry import ProviderSlot
from workers.market_data.types import AssetInfo, History, Quote

log = get_logger(__name__)
T = TypeVar("T")


class SymbolFailed(Exception):
    """Every provider failed for a symbol; `reason` joins their reasons."""

    def __init__(self, errors: Sequence[ProviderError]) -> None:
        self.errors = list(errors)
        self.reason = "; ".join(e.reason for e in errors) or "no provider configured"
        self.kind = summary_kind(errors)
        super().__init__(self.reason)


def count_symbol_failure(failure: SymbolFailed | None, *, provider: str = "") -> None:
    """One symbol could not be fetched: count it by the last provider tried and the kind
    (`failure` None: `provider` answered with no data)."""
    if failure is None:
        last, kind = provider, ErrorKind.NOT_FOUND
    else:
        last, kind = (failure.errors[-1].provider if failure.errors else ""), failure.kind
    metrics.SYMBOL_FETCH_FAILURES.labels(provider=last or "none", reason=str(kind)).inc()


def summary_kind(errors: Sequence[ProviderError]) -> ErrorKind:
    """One kind for a list of failures: not_found only if every provider said so."""
    kinds = {e.kind for e in errors}
    if kinds and kinds <= {ErrorKind.NOT_FOUND}:
        return ErrorKind.NOT_FOUND
    if kinds & {ErrorKind.TRANSIENT, ErrorKind.MALFORMED, ErrorKind.UNAVAILABLE}:
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT


async def guarded(slot: ProviderSlot, call: Callable[[], Awaitable[T]]) -> T:
    """One attempt through `slot`'s breaker, reporting the outcome to it."""
    breaker = slot.breaker
    if not breaker.allow(time.monotonic()):
        _report_breaker(slot)
        raise ProviderError(ErrorKind.UNAVAILABLE, f"{slot.name}: circuit open", provider=slot.name)
    try:
        result = await call()
    except ProviderError as error:
        if error.unhealthy:
            breaker.record_failure(time.monotonic())
            _report_breaker(slot)
        elif not error.throttled:
            breaker.record_success()  # it answered; the symbol or request is the problem
            _report_breaker(slot)
        else:
            breaker.abandon()
        raise
    except BaseException:
        breaker.abandon()
        raise
    breaker.record_success()
    _report_breaker(slot)
    return result


def _report_breaker(slot: ProviderSlot) -> None:
    # 1 from the moment it opens until a request succeeds again (half-open counts as open).
    closed = slot.breaker.state(time.monotonic()) is BreakerState.CLOSED
    metrics.CIRCUIT_BREAKER_OPEN.labels(provider=slot.name).set(0 if closed else 1)


def _retryable(answer: Quote | ProviderError) -> bool:
    return isinstance(answer, ProviderError) and answer.retryable


class Failover:
    """Providers in order, with a per-symbol retry budget."""

    def __init__(
        self, slots: Sequence[ProviderSlot], *, budget: float, rng: random.Random | None = None
    ) -> None:
        self.slots = list(slots)
        self.budget = budget
        self._rng = rng or random.Random()

    async def _attempts(self, slot: ProviderSlot, call: Callable[[], Awaitable[T]]) -> T:
        """`call` through `slot`'s breaker, retried within the budget."""

        async def attempt() -> T:
            return await guarded(slot, call)

        return await call_with_retries(attempt, budget=self.budget, rng=self._rng)

    async def _first(
        self, make_call: Callable[[ProviderSlot], Callable[[], Awaitable[T]]]
    ) -> tuple[T, str]:
        errors: list[ProviderError] = []
        for slot in self.slots:
            try:
                result = await self._attempts(slot, make_call(slot))
            except ProviderError as error:
                errors.append(error)
                continue
            return result, slot.name
        raise SymbolFailed(errors)

    async def history(self, symbol: str, *, start: date, end: date) -> tuple[History, str]:
        """`symbol`'s history from the first provider that has it, and that provider's name."""
        return await self._first(
            lambda slot: lambda: slot.provider.history(symbol, start=start, end=end)
        )

    async def asset_info(self, symbol: str) -> tuple[AssetInfo, str]:
        """`symbol`'s reference data from the first provider that has it."""
        return await self._first(lambda slot: lambda: slot.provider.asset_info(symbol))

    async def _quotes_from(
        self, slot: ProviderSlot, symbols: list[str]
    ) -> dict[str, Quote | ProviderError]:
        """One provider's quotes; symbols that met a retryable error are asked again (only
        those) with backoff, within the budget."""
        answers: dict[str, Quote | ProviderError] = {}
        pending = list(symbols)
        started = time.monotonic()
        attempt = 0
        while True:

            async def ask(batch: list[str] = pending) -> dict[str, Quote | ProviderError]:
                return await slot.provider.quotes(batch)

            answers.update(await self._attempts(slot, ask))
            retry = [s for s in pending if _retryable(answers[s])]
            if not retry:
                return answers
            delay = next_delay(
                ProviderError(ErrorKind.TRANSIENT, "quotes"),
                attempt=attempt,
                elapsed=time.monotonic() - started,
                budget=self.budget,
                rng=self._rng,
            )
            if delay is None:
                return answers
            await asyncio.sleep(delay)
            pending, attempt = retry, attempt + 1

    async def quotes(
        self, symbols: Sequence[str]
    ) -> tuple[dict[str, tuple[Quote, str]], dict[str, SymbolFailed]]:
        """Latest quotes, batched per provider; symbols a provider misses go to the next one."""
        found: dict[str, tuple[Quote, str]] = {}
        errors: dict[str, list[ProviderError]] = {s: [] for s in symbols}
        pending = list(symbols)
        for slot in self.slots:
            if not pending:
                break
            batch = list(pending)
            try:
                answers = await self._quotes_from(slot, batch)
            except ProviderError as error:
                for symbol in batch:
                    errors[symbol].append(error)
                continue
            pending = []
            for symbol in batch:
                answer = answers.get(symbol)
                if isinstance(answer, Quote):
                    found[symbol] = (answer, slot.name)
                else:
                    errors[symbol].append(
                        answer or ProviderError(ErrorKind.NOT_FOUND, f"{slot.name}: no quote")
                    )
                    pending.append(symbol)
        failed = {s: SymbolFailed(errors[s]) for s in pending}
        return found, failed
