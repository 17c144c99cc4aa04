"""Refusing a message for a task no contract defines, without losing what it was.

Celery already refuses such a message before anything runs: it logs "Received unregistered
task", rejects the message without requeueing it (on Redis: dropped) and stores a
`NotRegistered` failure as its result. What it cannot do is tell findash's task registry.
`UnknownTaskRecorder`, connected to Celery's `task_unknown` signal, logs one line naming
the task and ends its registry row (if a sender recorded one) FAILURE with the reason,
instead of leaving it PENDING until the sweep calls it "never started".
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from service.core import task_registry
from service.core.logs import get_logger
from service.core.settings import Settings

log = get_logger(__name__)

# It runs on the worker's consumer loop: a quick connection or none, never a long wait.
_DATABASE_TIMEOUT_SECONDS = 2.0


class UnknownTaskRecorder:
    """Connected to Celery's `task_unknown` signal in the worker's main process."""

    def __init__(self, settings: Settings) -> None:
        self._database_url = settings.database_url

    def __call__(self, *, name: str, id: str, **_: Any) -> None:
        """Log the refusal and end the task's PENDING registry row, if there is one."""
        try:
            ended = asyncio.run(self._fail_row(task_id=id, name=name))
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            log.error(
                "refused a message for an undefined task; its registry row is left to the sweep",
                refused_task=name,
                task_id=id,
                error=repr(exc),
            )
            return
        log.error(
            "refused a message for an undefined task",
            refused_task=name,
            task_id=id,
            registry_row_failed=ended,
        )

    async def _fail_row(self, *, task_id: str, name: str) -> bool:
        connection: asyncpg.Connection = await asyncpg.connect(
            self._database_url,
            timeout=_DATABASE_TIMEOUT_SECONDS,
            command_timeout=_DATABASE_TIMEOUT_SECONDS,
        )
        try:
            return await task_registry.fail_unknown_task(connection, task_id=task_id, name=name)
        finally:
            await connection.close(timeout=_DATABASE_TIMEOUT_SECONDS)
