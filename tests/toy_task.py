"""A toy task added the way docs/TASKS.md says: one contract, one body, one schedule entry.

The end-to-end test (tests/test_adding_a_task.py) runs a real worker with
`celery -A tests.toy_worker worker`, a real API with
`uvicorn --factory tests.toy_task:create_api`, and a scheduler replica with `TOY_JOB`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, ClassVar

import msgspec
from litestar import Litestar

from service.api.app import create_app
from service.core.contracts import CONTRACTS, TaskContract
from service.core.logs import configure_logging
from service.core.settings import Settings
from service.scheduler.plan import Every, Job
from workers.runtime import TaskContext

TOY_QUEUE = "toy"


class Echo(TaskContract, frozen=True):
    """Repeat `text` `times` times (a toy task)."""

    name: ClassVar[str] = "toy_echo"
    queue: ClassVar[str] = TOY_QUEUE
    submit_path: ClassVar[str | None] = "toy-echo"
    summary: ClassVar[str] = "Echo some text"

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    times: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1


async def echo(ctx: TaskContext, task: Echo) -> dict[str, Any]:
    """The body: it sees the decoded contract, never raw kwargs."""
    await ctx.report_progress(current=1, total=1, message="echoed")
    return {"echo": " ".join([task.text] * task.times), "task_id": ctx.task_id}


TOY_JOB = Job(
    id="toy-echo-every-2s",
    task=Echo(text="tick"),
    rule=Every(seconds=2),
    grace=timedelta(seconds=30),
)


def create_api() -> Litestar:
    """The API with the toy contract registered (an ASGI factory for uvicorn)."""
    settings = Settings.from_env()
    configure_logging(service="api", level=settings.log_level, fmt=settings.log_format)
    return create_app(settings, contracts=(*CONTRACTS, Echo))
