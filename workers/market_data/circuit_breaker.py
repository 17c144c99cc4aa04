"""A per-provider circuit breaker (pure: the clock is passed in).

Closed: requests flow and consecutive failures are counted. After
`threshold` of them it opens and refuses requests for `cooldown` seconds;
then it is half-open: one trial request goes through, and its success closes
the breaker while its failure opens it again.
"""

from __future__ import annotations

from enum import StrEnum


class BreakerState(StrEnum):
    """Where the breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one provider within one worker process."""

    def __init__(self, *, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    def state(self, now: float) -> BreakerState:
        """The state at time `now` (monotonic seconds)."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if now - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, now: float) -> bool:
        """Whether a request may go out now; in half-open, only one trial at a time."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        """A request succeeded: close."""
        self.failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def abandon(self) -> None:
        """A request ended without a verdict (cancelled): free the half-open trial."""
        self._trial_in_flight = False

    def record_failure(self, now: float) -> None:
        """A request failed in a way that says the provider is unwell."""
        self.failures += 1
        self._trial_in_flight = False
        if self._opened_at is not None or self.failures >= self.threshold:
            self._opened_at = now
