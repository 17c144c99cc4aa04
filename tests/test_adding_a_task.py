"""Adding a task is one contract plus one body (docs/TASKS.md): a toy task registered that
way is submitted over real HTTP, runs on a real worker, reports its status and is scheduled."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service.core import task_registry
from service.core.celery_config import create_publisher_app
from service.core.publisher import TaskPublisher
from service.core.settings import Settings
from service.core.users import IssuedKey
from service.dev.embedded import free_port
from service.scheduler.replica import Scheduler, create_publisher
from tests.api_client import Api
from tests.conftest import start_worker
from tests.processes import ManagedProcess, wait_for, wait_until_http_ok
from tests.toy_task import TOY_JOB, TOY_QUEUE, Echo

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def toy_worker(
    base_env: dict[str, str], scratch_dir: Path, postgres: object
) -> Iterator[ManagedProcess]:
    """A real worker built with the toy body, consuming only the toy queue."""
    process = start_worker(
        base_env,
        log_path=scratch_dir / "toy-worker.log",
        name="toy",
        concurrency=1,
        app_module="tests.toy_worker",
        queues=TOY_QUEUE,
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def toy_api(base_env: dict[str, str], scratch_dir: Path) -> Iterator[str]:
    """The real API, served by uvicorn, with the toy contract registered."""
    port = free_port()
    process = ManagedProcess(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tests.toy_task:create_api",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=base_env,
        log_path=scratch_dir / "toy-api.log",
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_http_ok(f"{url}/health", process)
    yield url
    process.stop()


@pytest.fixture
async def api(
    toy_api: str, http: aiohttp.ClientSession, new_user: Callable[..., Awaitable[IssuedKey]]
) -> Api:
    """A plain user of the toy API."""
    return Api(http, toy_api, (await new_user()).api_key)


async def _send_by_hand(settings: Settings, name: str, *, task_id: str) -> None:
    sender = create_publisher_app(settings)
    try:
        await asyncio.to_thread(
            sender.send_task, name, kwargs={"amount": 1}, queue=TOY_QUEUE, task_id=task_id
        )
    finally:
        sender.close()


def _refusals(worker: ManagedProcess, task_id: str) -> list[bool]:
    """`registry_row_failed` of each refusal line the worker logged for `task_id`."""
    return [
        line["registry_row_failed"]
        for line in worker.json_lines()
        if line.get("event") == "refused a message for an undefined task"
        and line.get("task_id") == task_id
    ]


async def _finished(pool: asyncpg.Pool, task_id: str, *, within: float = 30) -> asyncpg.Record:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        row = await pool.fetchrow(
            "SELECT state, result, error, owner_id FROM tasks WHERE id = $1", task_id
        )
        if row is not None and row["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
            return row
        assert asyncio.get_running_loop().time() < deadline, f"{task_id} did not finish"
        await asyncio.sleep(0.1)


class TestToyTask:
    async def test_submit_run_status(self, api: Api, toy_worker: ManagedProcess) -> None:
        """The toy contract's route accepts its body, the toy worker runs its body on the
        decoded contract, and the status route reports the result."""
        status, answer = await api.submit("toy-echo", {"text": "hi", "times": 3})
        assert status == 202, answer
        final = await api.wait_finished(answer["task_id"], within=30)
        assert final["state"] == "SUCCESS", final
        assert final["result"]["echo"] == "hi hi hi"
        assert final["name"] == Echo.name
        status, again = await api.status_of(answer["task_id"])
        assert (status, again["progress"]) == (200, {"current": 1, "total": 1, "message": "echoed"})

    async def test_contract_limits_are_the_edge_validation(self, api: Api) -> None:
        """A body that breaks the contract is a 400 problem naming the field; nothing is queued."""
        status, problem = await api.submit("toy-echo", {"text": "hi", "times": 11})
        assert status == 400
        assert [e["field"] for e in problem["errors"]] == ["times"]

    async def test_openapi_documents_the_route(self, api: Api) -> None:
        """The OpenAPI document lists the toy route with the contract as its request body."""
        status, schema, _ = await api.request("GET", "/schema/openapi.json")
        assert status == 200
        operation = schema["paths"]["/api/v1/tasks/toy-echo"]["post"]
        body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert body_ref.rsplit("/", 1)[-1] == "Echo"
        assert "text" in schema["components"]["schemas"]["Echo"]["required"]

    async def test_a_message_that_breaks_the_contract_never_runs(
        self, settings: Settings, pool: asyncpg.Pool, toy_worker: ManagedProcess
    ) -> None:
        """A message whose arguments break the contract fails with a clear error before the
        body runs."""
        task_id = str(uuid.uuid4())
        sender = create_publisher_app(settings)
        try:
            # A hand-made message, as any Celery client could send: nothing validated it.
            await asyncio.to_thread(
                sender.send_task,
                Echo.name,
                kwargs={"text": "", "times": 99},
                queue=TOY_QUEUE,
                task_id=task_id,
            )
        finally:
            sender.close()
        row = await _finished(pool, task_id)
        assert row["state"] == "FAILURE"
        error = row["error"]
        assert error["type"] == "InvalidTaskArguments"
        assert "toy_echo" in error["message"]
        assert "`$.text`" in error["message"]
        assert row["result"] is None

    async def test_a_message_for_an_undefined_task_is_refused(
        self, settings: Settings, pool: asyncpg.Pool, toy_worker: ManagedProcess
    ) -> None:
        """A message naming a task no contract defines never runs: the worker logs the
        refusal and ends the task's registry row FAILURE with the reason."""
        task_id = str(uuid.uuid4())
        async with pool.acquire() as connection:
            await task_registry.record_submission(
                connection,
                task_id=task_id,
                owner_id=None,
                name="wire_transfer",
                params={"amount": 1},
                request_id=None,
            )
        await _send_by_hand(settings, "wire_transfer", task_id=task_id)
        row = await _finished(pool, task_id)
        assert row["state"] == "FAILURE"
        assert row["error"] == {
            "type": "UnknownTask",
            "message": "refused: no worker defines a task named 'wire_transfer'",
        }
        assert row["result"] is None
        assert await pool.fetchval("SELECT started_at FROM tasks WHERE id = $1", task_id) is None
        assert _refusals(toy_worker, task_id) == [True]

    async def test_an_undefined_task_without_a_registry_row_is_logged(
        self, settings: Settings, pool: asyncpg.Pool, toy_worker: ManagedProcess
    ) -> None:
        """A hand-made message for an undefined task is refused and logged once; no registry
        row appears for it."""
        task_id = str(uuid.uuid4())
        await _send_by_hand(settings, "drop_tables", task_id=task_id)
        assert await asyncio.to_thread(
            wait_for, lambda: bool(_refusals(toy_worker, task_id)), timeout=30
        )
        assert any(
            "Received unregistered task" in line.get("event", "") and task_id in str(line)
            for line in toy_worker.json_lines()
        )
        assert _refusals(toy_worker, task_id) == [False]
        assert await pool.fetchval("SELECT count(*) FROM tasks WHERE id = $1", task_id) == 0

    async def test_a_schedule_is_one_entry(
        self, settings: Settings, pool: asyncpg.Pool, toy_worker: ManagedProcess
    ) -> None:
        """A scheduler replica given the toy job fires it, and the worker runs it: the fired
        task ends SUCCESS with the body's result."""
        publisher: TaskPublisher = create_publisher(settings)
        scheduler = Scheduler(settings, jobs=[TOY_JOB], publisher=publisher, name="toy-leader")
        stop = asyncio.Event()
        running = asyncio.ensure_future(scheduler.run(stop))
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while True:
                fired = await pool.fetchval(
                    "SELECT task_id::text FROM schedule_fires WHERE job_id = $1 AND state = 'sent'"
                    " ORDER BY scheduled_for LIMIT 1",
                    TOY_JOB.id,
                )
                if fired is not None:
                    break
                assert asyncio.get_running_loop().time() < deadline, "the toy job never fired"
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.wait_for(running, timeout=30)
            publisher.close()
        row = await _finished(pool, fired)
        assert row["state"] == "SUCCESS", row["error"]
        assert row["result"]["echo"] == "tick"
        assert row["owner_id"] is None
