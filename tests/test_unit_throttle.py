"""When 429s count as a provider-wide overrun (pure)."""

from __future__ import annotations

import pytest

from workers.market_data.providers.transport import THROTTLED_IN_A_ROW, throttled_in_a_row


@pytest.mark.parametrize(
    ("statuses", "pauses"),
    [
        ([429], [False]),
        ([429, 429, 429], [False, False, True]),  # three in a row: the rate is exceeded
        ([429, 200, 429, 200, 429], [False] * 5),  # 429s among successes: isolated
        ([429, 429, 200, 429, 429, 429, 429], [False] * 5 + [True, True]),
    ],
)
def test_throttles_in_a_row(statuses: list[int], pauses: list[bool]) -> None:
    """Only the third 429 running (and each one after) pauses the whole provider."""
    running, seen = 0, []
    for status in statuses:
        running = throttled_in_a_row(running, status=status)
        seen.append(running >= THROTTLED_IN_A_ROW)
    assert seen == pauses
