"""A Redis that requires a password: the API and a worker reach it through
`redis://:PASSWORD@…`, a submitted task runs, and the password never reaches a log line
(the session's end-of-run check greps every log for `REDIS_PASSWORD`, issue 11 item 10)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis

from service.core.settings import Settings
from service.core.users import IssuedKey
from service.dev.embedded import EmbeddedRedis
from tests.api_client import Api
from tests.conftest import REDIS_PASSWORD, start_worker
from tests.processes import ManagedProcess, serve_api

pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Guarded:
    """The module's password-protected Redis, and an API and a worker using it."""

    server: EmbeddedRedis
    api_url: str
    api: ManagedProcess
    worker: ManagedProcess


@pytest.fixture(scope="module")
def guarded(base_env: dict[str, str], scratch_dir: Path, postgres: object) -> Iterator[Guarded]:
    """A redis-server with `requirepass`, and the real API and worker processes on it."""
    server = EmbeddedRedis(scratch_dir / "redis-auth", password=REDIS_PASSWORD)
    server.start()
    env = {**base_env, "REDIS_URL": server.url}
    worker = start_worker(env, log_path=scratch_dir / "redis-auth-worker.log", name="redis-auth")
    try:
        with serve_api(env, log_path=scratch_dir / "redis-auth-api.log") as (url, api):
            yield Guarded(server=server, api_url=url, api=api, worker=worker)
    finally:
        worker.stop()
        server.stop()


class TestPasswordProtectedRedis:
    async def test_the_server_refuses_a_client_without_the_password(self, guarded: Guarded) -> None:
        """The module's Redis really requires the password: a client without it is refused."""
        anonymous = aioredis.Redis.from_url(guarded.server.url.replace(f":{REDIS_PASSWORD}@", ""))
        try:
            with pytest.raises(redis.AuthenticationError):
                await anonymous.ping()
        finally:
            await anonymous.aclose()

    async def test_api_and_worker_run_a_task_through_it(
        self,
        guarded: Guarded,
        http: aiohttp.ClientSession,
        new_user: Callable[..., Awaitable[IssuedKey]],
    ) -> None:
        """With the password in REDIS_URL the API is ready, a submitted task runs on the
        worker to SUCCESS, and neither process's log holds the password."""
        api = Api(http, guarded.api_url, (await new_user()).api_key)
        status, readiness, _ = await api.request("GET", "/ready")
        assert (status, readiness["down"]) == (200, []), readiness
        status, answer = await api.submit("portfolio-performance", {"days": 30})
        assert status == 202, answer
        final = await api.wait_finished(answer["task_id"], within=60)
        assert final["state"] == "SUCCESS", (final, guarded.worker.log_tail())
        logs = guarded.api.log_lines() + guarded.worker.log_lines()
        assert any("redis://:***@" in line for line in logs), "no log line shows the masked URL"
        assert not [line for line in logs if REDIS_PASSWORD in line]

    def test_redacted_settings_mask_it(self, guarded: Guarded) -> None:
        """`Settings.redacted()` of a password URL shows `***` in every Redis URL setting."""
        redacted = Settings.from_env({"REDIS_URL": guarded.server.url}).redacted()
        assert REDIS_PASSWORD not in repr(redacted)
        for key in ("redis_url", "celery_broker_url", "celery_result_backend"):
            assert redacted[key].startswith("redis://:***@"), (key, redacted[key])
