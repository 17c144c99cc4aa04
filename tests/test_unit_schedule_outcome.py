"""How `findash schedule list` reads a fire's task outcome out of any task's result."""

from __future__ import annotations

from typing import Any

import pytest

from service.cli.schedule import TaskOutcome, outcome_text, task_outcome


class TestTaskOutcome:
    @pytest.mark.parametrize(
        ("result", "error", "expected"),
        [
            (
                {
                    "requested": 3,
                    "updated": 2,
                    "failed": [{"symbol": "ZZQ", "reason": "yahoo: no price"}],
                },
                None,
                TaskOutcome(
                    counts={"requested": 3, "updated": 2, "failed": 1},
                    failures=[("ZZQ", "yahoo: no price")],
                    error=None,
                ),
            ),
            (
                {"portfolios": 4, "start": "2026-11-18", "snapshots": 3, "failed": {"7": "boom"}},
                None,
                TaskOutcome(
                    counts={"portfolios": 4, "snapshots": 3, "failed": 1},
                    failures=[("7", "boom")],
                    error=None,
                ),
            ),
            (
                {"tasks": 5, "fires": 0, "dry_run": False, "failed": 2},
                None,
                TaskOutcome(counts={"tasks": 5, "fires": 0, "failed": 2}, failures=[], error=None),
            ),
            (
                None,
                {"type": "WorkerLost", "message": "retries spent"},
                TaskOutcome(counts={}, failures=[], error="WorkerLost: retries spent"),
            ),
            (["not", "a", "mapping"], None, TaskOutcome(counts={}, failures=[], error=None)),
        ],
        ids=["prices", "snapshot", "counted-failures", "failure", "odd-result"],
    )
    def test_counts_failures_and_error(
        self, result: Any, error: dict[str, Any] | None, expected: TaskOutcome
    ) -> None:
        """Integer fields are counts (booleans are not), a list or mapping of failures is
        listed and counted, and a failed task's error reads `type: message`."""
        assert task_outcome(result=result, error=error) == expected

    def test_text_shows_the_first_failures_and_how_many_more(self) -> None:
        """The terminal text puts the counts on one line (by name, failed last), then at most
        three failures, then how many were left out, each line clipped to the width."""
        failed = [{"symbol": f"ZZ{i}", "reason": "yahoo: not found " + "x" * 200} for i in range(5)]
        text = outcome_text(
            task_outcome(result={"failed": failed, "updated": 4, "requested": 9}, error=None),
            reason_width=40,
        )
        lines = text.splitlines()
        assert lines[0] == "requested 9 · updated 4 · failed 5"
        assert [line.split(":")[0] for line in lines[1:4]] == ["✗ ZZ0", "✗ ZZ1", "✗ ZZ2"]
        assert all(len(line) <= 40 for line in lines)
        assert lines[4] == "… and 2 more failures"

    def test_text_of_a_task_not_started_is_empty(self) -> None:
        """A fire whose task has no outcome yet has no outcome text."""
        assert outcome_text(task_outcome(result=None, error=None)) == ""
