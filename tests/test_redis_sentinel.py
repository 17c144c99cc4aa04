"""Redis through Sentinel: with `sentinel://` URLs and REDIS_SENTINEL_MASTER, the clients,
the API and a real Celery worker find a password-protected master through a sentinel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import redis

from service.core import redis_clients
from service.core.redis_connection import redis_endpoint
from service.core.settings import Settings
from service.core.users import IssuedKey
from service.dev.embedded import EmbeddedRedis, EmbeddedSentinel, EmbeddedServiceError
from tests.api_client import Api, ready_and_runs_a_task
from tests.conftest import REDIS_PASSWORD, start_worker
from tests.processes import serve_api

pytestmark = pytest.mark.timeout(180)

MASTER_NAME = "findash-master"


@dataclass(frozen=True)
class Monitored:
    """The module's master, its sentinel, and the sentinel URL clients are given."""

    master: EmbeddedRedis
    sentinel: EmbeddedSentinel
    url: str

    def env(self) -> dict[str, str]:
        """The Redis variables of a process that reaches the master through the sentinel."""
        return {"REDIS_URL": self.url, "REDIS_SENTINEL_MASTER": MASTER_NAME}


@pytest.fixture(scope="module")
def monitored(scratch_dir: Path) -> Iterator[Monitored]:
    """A password-protected master and one sentinel monitoring it."""
    master = EmbeddedRedis(scratch_dir / "sentinel-master", password=REDIS_PASSWORD)
    master.start()
    sentinel = EmbeddedSentinel(
        scratch_dir / "sentinel",
        master_name=MASTER_NAME,
        master_port=master.port,
        master_password=REDIS_PASSWORD,
    )
    try:
        sentinel.start()
    except EmbeddedServiceError as exc:
        master.stop()
        pytest.skip(f"redis-server cannot run as a sentinel here: {exc}")
    # The master's password and db go in the sentinel URL, as Celery reads them.
    url = f"sentinel://:{REDIS_PASSWORD}@{sentinel.host}:{sentinel.port}/0"
    yield Monitored(master=master, sentinel=sentinel, url=url)
    sentinel.stop()
    master.stop()


class TestSentinel:
    async def test_clients_reach_the_master(self, monitored: Monitored) -> None:
        """The sync and asyncio clients built from a sentinel:// URL write to the master the
        sentinel names."""
        endpoint = redis_endpoint(Settings.from_env(monitored.env()))
        options = {"budget_seconds": 5.0, "socket_timeout": 5.0, "connect_timeout": 5.0}
        sync = redis_clients.sync_client(endpoint, **options)
        client = redis_clients.async_client(endpoint, **options)
        try:
            sync.set("sentinel-probe-sync", "1")
            await client.set("sentinel-probe-async", "1")
        finally:
            sync.close()
            await client.aclose()
        direct = redis.Redis.from_url(monitored.master.url)
        try:
            assert direct.mget("sentinel-probe-sync", "sentinel-probe-async") == [b"1", b"1"]
        finally:
            direct.close()

    async def test_api_and_worker_run_a_task_through_the_sentinel(
        self,
        monitored: Monitored,
        base_env: dict[str, str],
        scratch_dir: Path,
        http: aiohttp.ClientSession,
        new_user: Callable[..., Awaitable[IssuedKey]],
    ) -> None:
        """A real worker and API whose broker, result backend and clients are the sentinel
        URL run a submitted task to SUCCESS."""
        env = {**base_env, **monitored.env()}
        worker = start_worker(env, log_path=scratch_dir / "sentinel-worker.log", name="sentinel")
        try:
            with serve_api(env, log_path=scratch_dir / "sentinel-api.log") as (url, _):
                api = Api(http, url, (await new_user()).api_key)
                await ready_and_runs_a_task(api, worker_log=worker.log_tail)
        finally:
            worker.stop()
        direct = redis.Redis.from_url(monitored.master.url)
        try:
            assert direct.keys("celery-task-meta-*"), "the worker stored no result on the master"
        finally:
            direct.close()
