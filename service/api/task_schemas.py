"""Response bodies of the task API. Request bodies are the task contracts
(`service.core.contracts`)."""

from __future__ import annotations

from typing import Literal

import msgspec


class Submitted(msgspec.Struct, frozen=True):
    """A submit's answer: 202 `submitted`, or 200 `existing` for an unfinished duplicate."""

    task_id: str
    status: Literal["submitted", "existing"]


class CancelAccepted(msgspec.Struct, frozen=True):
    """A cancel's answer: the task's state right after the request."""

    task_id: str
    state: str


class WorkerInfo(msgspec.Struct, frozen=True):
    """One Celery worker as `celery inspect` sees it."""

    hostname: str
    pool: str | None
    concurrency: int | None
    active: int
    processed: int
    queues: list[str]
    heartbeat_age_seconds: float | None
