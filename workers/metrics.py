"""Every metric a worker process records (docs/PROMETHEUS.md), in one place.

With `WORKER_METRICS_PORT` set, `workers/worker.py` points prometheus-client at the
instance's multiprocess directory before this module is imported, so each prefork child
writes its own file and the main process serves their sum; otherwise the values live in
the process's memory and nobody serves them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from celery import Task
from prometheus_client import Counter, Gauge, Histogram

from service.core.metrics_exposition import task_label

TASK_STATES = ("SUCCESS", "FAILURE", "RETRY", "REVOKED")
PROVIDER_OUTCOMES = ("ok", "not_found", "rate_limited", "server_error", "timeout", "error")

TASKS = Counter("findash_tasks", "Tasks that ended in a state, by task name.", ["task", "state"])
TASK_DURATION = Histogram(
    "findash_task_duration_seconds",
    "Time from a task's start to its end in the worker, by task name.",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800),
)
PROVIDER_REQUESTS = Counter(
    "findash_provider_requests",
    "HTTP requests to market-data providers, by provider and outcome.",
    ["provider", "outcome"],
)
RATE_LIMITER_WAIT = Histogram(
    "findash_rate_limiter_wait_seconds",
    "How long a provider request waited for its slot from the shared rate limiter.",
    ["provider"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
# Breakers are per process. "mostrecent": the state a process of this instance reported
# last (on every provider call, refused ones included), so it follows the traffic; the main
# process reports 0 at start so the series exists while children come and go. A "live*"
# mode would drop the series whenever recycling leaves no child alive for a moment, and
# "max" would keep a dead child's 1 forever.
CIRCUIT_BREAKER_OPEN = Gauge(
    "findash_circuit_breaker_open",
    "1 if the provider's circuit breaker was open at the last call any worker process made.",
    ["provider"],
    multiprocess_mode="mostrecent",
)
BARS_WRITTEN = Counter("findash_bars_written", "Daily bars inserted or changed.")
ROWS_WRITTEN = Counter("findash_rows_written", "Rows inserted or changed, by table.", ["table"])
SYMBOL_FETCH_FAILURES = Counter(
    "findash_symbol_fetch_failures",
    "Symbols a fetch could not get, by the last provider tried and the kind of failure.",
    ["provider", "reason"],
)


def breakers_closed(providers: Iterable[str]) -> None:
    """Every provider's breaker starts closed: said once by the main process, so each series
    exists before the first provider call."""
    for provider in providers:
        CIRCUIT_BREAKER_OPEN.labels(provider=provider).set(0)


def provider_outcome(status: int) -> str:
    """The outcome label of a provider's HTTP answer."""
    if 200 <= status < 300:
        return "ok"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "error"


def count_task(name: str | None, state: str) -> None:
    """One task of `name` ended in `state`."""
    TASKS.labels(task=task_label(name), state=state).inc()


class TaskTimer:
    """Celery's task_prerun/task_postrun pair, observing each task's duration by name."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def started(self, task_id: str, **_: Any) -> None:
        """task_prerun."""
        self._started[task_id] = time.monotonic()

    def ended(self, task_id: str, task: Task, **_: Any) -> None:
        """task_postrun."""
        began = self._started.pop(task_id, None)
        if began is not None:
            TASK_DURATION.labels(task=task_label(task.name)).observe(time.monotonic() - began)


def on_success(sender: Task, **_: Any) -> None:
    """task_success."""
    count_task(sender.name, "SUCCESS")


def on_failure(sender: Task, **_: Any) -> None:
    """task_failure."""
    count_task(sender.name, "FAILURE")


def on_retry(sender: Any, request: Any = None, **_: Any) -> None:
    """task_retry (the sender is the task, its request carries the name)."""
    count_task(getattr(sender, "name", None) or getattr(request, "task", None), "RETRY")


def on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """task_revoked (sent in the main process for a revoked message; sender may be None)."""
    count_task(getattr(sender, "name", None) or getattr(request, "name", None), "REVOKED")


def mark_dead_in(directory: Path) -> Callable[..., None]:
    """worker_process_shutdown: drop the exiting child's live gauges from `directory`; its
    counters and histograms stay summed, so totals survive recycling."""

    def process_exited(pid: int | None = None, **_: Any) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), path=str(directory))  # type: ignore[no-untyped-call]

    return process_exited
