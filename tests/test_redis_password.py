"""A Redis that requires a password and has an ACL user: the API reaches it through
`redis://:PASSWORD@…`, a worker as the ACL user through `redis://findash:PASSWORD@…`, a
submitted task runs, a wrong password fails at once and clearly, and no password reaches a
log line (the session's end-of-run check greps every log for both, issue 11 item 10)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis
import redis.asyncio as aioredis

from service.core import redis_clients
from service.core.redis_connection import RedisEndpoint
from service.core.settings import Settings
from service.core.users import IssuedKey
from service.dev.embedded import EmbeddedRedis
from tests.api_client import Api, ready_and_runs_a_task
from tests.conftest import REDIS_ACL_PASSWORD, REDIS_PASSWORD, start_worker
from tests.processes import ManagedProcess, serve_api

pytestmark = pytest.mark.timeout(120)

ACL_USER = "findash-app"
WRONG_PASSWORD = "not-the-password"


@dataclass(frozen=True)
class Guarded:
    """The module's password-protected Redis, and an API and a worker using it."""

    server: EmbeddedRedis
    api_url: str
    api: ManagedProcess
    worker: ManagedProcess


@pytest.fixture(scope="module")
def guarded(base_env: dict[str, str], scratch_dir: Path, postgres: object) -> Iterator[Guarded]:
    """A redis-server with `requirepass` and an ACL user, the real API on the password and a
    real worker as the ACL user."""
    server = EmbeddedRedis(
        scratch_dir / "redis-auth",
        password=REDIS_PASSWORD,
        acl_user=(ACL_USER, REDIS_ACL_PASSWORD),
    )
    server.start()
    env = {**base_env, "REDIS_URL": server.url}
    worker = start_worker(
        {**base_env, "REDIS_URL": server.acl_url},
        log_path=scratch_dir / "redis-auth-worker.log",
        name="redis-auth",
    )
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
        """With the password in the API's REDIS_URL and the ACL user in the worker's, the API
        is ready, a submitted task runs on the worker to SUCCESS, and neither process's log
        holds either password."""
        api = Api(http, guarded.api_url, (await new_user()).api_key)
        await ready_and_runs_a_task(api, worker_log=guarded.worker.log_tail)
        logs = guarded.api.log_lines() + guarded.worker.log_lines()
        assert any("redis://:***@" in line for line in logs), "no log line shows the masked URL"
        assert not [line for line in logs if REDIS_PASSWORD in line or REDIS_ACL_PASSWORD in line]

    async def test_the_acl_user_is_who_the_worker_is(self, guarded: Guarded) -> None:
        """The worker's connections are authenticated as the ACL user (CLIENT LIST shows it)."""
        admin = aioredis.Redis.from_url(guarded.server.url)
        try:
            clients = await admin.client_list()
        finally:
            await admin.aclose()
        assert ACL_USER in {client["user"] for client in clients}

    async def test_a_wrong_password_makes_the_api_unready(
        self,
        guarded: Guarded,
        base_env: dict[str, str],
        scratch_dir: Path,
        http: aiohttp.ClientSession,
    ) -> None:
        """An API given a wrong password starts, and `/ready` answers 503 naming Redis as
        down with an AuthenticationError (no hang)."""
        wrong = guarded.server.url.replace(REDIS_PASSWORD, WRONG_PASSWORD)
        env = {**base_env, "REDIS_URL": wrong}
        with serve_api(env, log_path=scratch_dir / "redis-wrong-password-api.log") as (url, _):
            async with http.get(f"{url}/ready") as response:
                readiness = await response.json()
        assert response.status == 503, readiness
        assert readiness["checks"]["redis"] == "down: AuthenticationError", readiness

    @pytest.mark.timeout(30)
    async def test_clients_do_not_retry_a_wrong_password(self, guarded: Guarded) -> None:
        """A wrong password raises AuthenticationError at once from the sync and asyncio
        clients, though their retry budget (120 s) is longer than this test's timeout."""
        endpoint = RedisEndpoint(
            url=guarded.server.acl_url.replace(REDIS_ACL_PASSWORD, WRONG_PASSWORD)
        )
        options = {"budget_seconds": 120.0, "socket_timeout": 1.0, "connect_timeout": 1.0}
        sync = redis_clients.sync_client(endpoint, **options)
        with pytest.raises(redis.AuthenticationError):
            sync.ping()
        sync.close()
        client = redis_clients.async_client(endpoint, **options)
        try:
            with pytest.raises(redis.AuthenticationError):
                await client.ping()
        finally:
            await client.aclose()

    def test_redacted_settings_mask_it(self, guarded: Guarded) -> None:
        """`Settings.redacted()` of a password URL shows `***` in every Redis URL setting."""
        redacted = Settings.from_env({"REDIS_URL": guarded.server.url}).redacted()
        assert REDIS_PASSWORD not in repr(redacted)
        for key in ("redis_url", "celery_broker_url", "celery_result_backend"):
            assert redacted[key].startswith("redis://:***@"), (key, redacted[key])
