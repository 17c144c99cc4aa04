"""Request rates written `N/period` (`120/minute`, `20/second`): one grammar for the
settings, the API's submit limiter and the market-data providers' limiter."""

from __future__ import annotations

import re
from dataclasses import dataclass

PERIOD_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
# A positive count (leading zeros allowed), a slash, a period name. Settings validate
# against this very pattern (msgspec searches with it, as `parse_rate` does), so a value
# that loads is a value that parses.
RATE_PATTERN = rf"^(0*[1-9][0-9]*)/({'|'.join(PERIOD_SECONDS)})$"
_RATE = re.compile(RATE_PATTERN)


@dataclass(frozen=True, slots=True)
class Rate:
    """`count` requests per `period_seconds`."""

    count: int
    period_seconds: int

    def __post_init__(self) -> None:
        if self.count < 1 or self.period_seconds < 1:
            raise ValueError(f"a rate needs a positive count and period, got {self!r}")

    @property
    def interval(self) -> float:
        """Seconds between requests when they are spread evenly over the period."""
        return self.period_seconds / self.count


def parse_rate(text: str) -> Rate:
    """The rate `text` spells (`5/minute` → 5 per 60 s); ValueError if it is not `N/period`."""
    match = _RATE.search(text)
    if match is None:
        raise ValueError(f"rate must look like 120/minute (N/second|minute|hour|day), got {text!r}")
    count, period = match.groups()
    return Rate(count=int(count), period_seconds=PERIOD_SECONDS[period])
