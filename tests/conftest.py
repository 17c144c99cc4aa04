"""Session-wide real infrastructure: private Postgres and Redis, the simulated exchange,
a Celery worker subprocess and the API served by uvicorn, all on free loopback ports.

Every process of the session runs on one pinned clock (`CLOCK_START` at `CLOCK_ANCHOR`),
so the suite sees the same calendar whatever the real date: `PINNED_START` is a Wednesday
mid-session, and `clock` (a fixture) reads the same instant as the subprocesses.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from service.core.clock import Clock, exchange_today, pinned_clock
from service.core.contracts import WORKER_QUEUES
from service.core.database import create_pool
from service.core.logs import configure_logging
from service.core.migrations import migrate
from service.core.settings import Settings
from service.core.users import IssuedKey, create_user
from service.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.processes import LOG_PATHS, ManagedProcess, wait_until_http_ok

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.market_sim", "tests.metrics_scrape"]

# The instant the suite pins "now" to: Wednesday 2026-11-18, 15:00 in New York (a regular
# session), read at CLOCK_ANCHOR (whole seconds, so pinned and real sub-seconds agree).
PINNED_START = datetime.fromisoformat("2026-11-18T15:00:00-05:00")
PINNED_TODAY = date(2026, 11, 18)
# The last session closed at PINNED_START: the exchange serves a session's bar once it closes.
PINNED_LAST_SESSION = date(2026, 11, 17)
CLOCK_ANCHOR = float(int(time.time()))
PINNED_CLOCK: Clock = pinned_clock(PINNED_START, anchor=CLOCK_ANCHOR)
CLOCK_ENV = {"CLOCK_START": PINNED_START.isoformat(), "CLOCK_ANCHOR": str(CLOCK_ANCHOR)}


# Secrets every process of the session is given, so the end-of-session check can prove none
# reaches a log line: provider keys, and a database password (the embedded Postgres trusts
# loopback, so the password is carried in every URL but never needed).
SECRET_SUFFIX = uuid.uuid4().hex
SECRETS_ENV = {
    "POLYGON_API_KEY": f"polygon-secret-{SECRET_SUFFIX}",
    "TIINGO_API_KEY": f"tiingo-secret-{SECRET_SUFFIX}",
}
DATABASE_PASSWORD = f"pg-secret-{SECRET_SUFFIX}"
# The password of the password-protected Redis tests/test_redis_password.py starts.
REDIS_PASSWORD = f"redis-secret-{SECRET_SUFFIX}"
# The password of that Redis's ACL user (tests/test_redis_password.py).
REDIS_ACL_PASSWORD = f"redis-acl-secret-{SECRET_SUFFIX}"
# Provider keys tests/market_sim.py gives its providers.
OTHER_SECRETS = ("test-polygon-key", "test-tiingo-key")
# A whole findash API key; a log line may show its 8-character prefix, never more.
API_KEY_PATTERN = re.compile(r"fdk_[A-Za-z0-9_\-]{20,}")


def with_password(url: str, password: str) -> str:
    """`url` with `password` for its user."""
    scheme, _, rest = url.partition("://")
    user, _, host = rest.partition("@")
    return f"{scheme}://{user}:{password}@{host}"


def secrets_in(text: str) -> list[str]:
    """The session's secrets (and any whole API key) found in `text`."""
    known = [
        *SECRETS_ENV.values(),
        DATABASE_PASSWORD,
        REDIS_PASSWORD,
        REDIS_ACL_PASSWORD,
        *OTHER_SECRETS,
    ]
    return [secret for secret in known if secret in text] + API_KEY_PATTERN.findall(text)


def unpinned(env: dict[str, str]) -> dict[str, str]:
    """`env` without the pinned clock, for processes that must run on real time."""
    return {k: v for k, v in env.items() if k not in CLOCK_ENV}


@pytest.fixture(scope="session")
def clock() -> Clock:
    """The session's pinned clock, the one every subprocess reads."""
    return PINNED_CLOCK


@pytest.fixture(scope="session")
def today(clock: Clock) -> date:
    """Today on the exchange calendar by the pinned clock (PINNED_TODAY for a normal run)."""
    return exchange_today(clock)


@pytest.fixture(scope="session")
def scratch_dir() -> Iterator[Path]:
    """A private folder for server data and process logs, removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="findash-tests-"))
    yield path
    if not os.environ.get("FINDASH_KEEP_TEST_DIR"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def logs_hold_no_secrets(
    scratch_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[logging.Handler]:
    """The whole session's logs, of every process it started and of the test process
    itself, hold no secret: checked once every process has stopped (a session error names
    the file and line otherwise)."""
    own_log = scratch_dir / "pytest-process.log"
    stream = own_log.open("a", encoding="utf-8")
    configure_logging(service="tests", stream=stream)
    handler = logging.getLogger().handlers[0]
    yield handler
    stream.close()
    files = {own_log, *LOG_PATHS, *scratch_dir.rglob("*.log")}
    files |= set(tmp_path_factory.getbasetemp().rglob("*.log"))
    leaks = [
        f"{path.name}:{number}: {', '.join(secret[:8] + '…' for secret in found)}"
        for path in sorted(files)
        if path.exists()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if (found := secrets_in(line))
    ]
    assert not leaks, "secrets in log lines:\n" + "\n".join(leaks[:50])


@pytest.fixture(autouse=True)
def _test_process_logs_captured(logs_hold_no_secrets: logging.Handler) -> None:
    """Keep the session's log file on the root logger (a logging test may swap it out)."""
    root = logging.getLogger()
    if logs_hold_no_secrets not in root.handlers:
        root.addHandler(logs_hold_no_secrets)


@pytest.fixture(scope="session")
def postgres(scratch_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A private Postgres with every migration applied."""
    server = EmbeddedPostgres(scratch_dir / "postgres", durable=False)
    server.start()
    asyncio.run(migrate(server.url))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(scratch_dir: Path) -> Iterator[EmbeddedRedis]:
    """A private redis-server shared by the session."""
    server = EmbeddedRedis(scratch_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def exchange_port() -> int:
    """The simulated exchange's port."""
    return free_port()


@pytest.fixture(scope="session")
def base_env(
    postgres: EmbeddedPostgres, redis_server: EmbeddedRedis, exchange_port: int
) -> dict[str, str]:
    """The environment every findash subprocess of the session gets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDASH_", "CELERY_"))}
    env.update(
        DATABASE_URL=with_password(postgres.url, DATABASE_PASSWORD),
        REDIS_URL=redis_server.url,
        YAHOO_BASE_URL=f"http://127.0.0.1:{exchange_port}",
        SIM_EXCHANGE_PORT=str(exchange_port),
        SIM_EXCHANGE_LATENCY_MS="0",
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        CELERY_TASK_TIME_LIMIT="120",
        CELERY_VISIBILITY_TIMEOUT="600",
        SUBMIT_RATE_LIMIT="100000/minute",
        TASK_STALE_SECONDS="10",
        YAHOO_RATE_LIMIT="5000/second",
        PYTHONUNBUFFERED="1",
        **SECRETS_ENV,
        **CLOCK_ENV,
    )
    return env


@pytest.fixture(scope="session")
def settings(base_env: dict[str, str]) -> Settings:
    """Settings pointing at the session's servers."""
    return Settings.from_env(base_env)


@pytest.fixture(scope="session")
def exchange(base_env: dict[str, str], exchange_port: int, scratch_dir: Path) -> Iterator[str]:
    """The simulated exchange in a subprocess; yields its base URL."""
    process = ManagedProcess(
        [
            sys.executable,
            "-m",
            "workers.market_data.simulated_exchange",
            "--port",
            str(exchange_port),
        ],
        env=base_env,
        log_path=scratch_dir / "exchange.log",
    )
    process.start()
    url = f"http://127.0.0.1:{exchange_port}"
    wait_until_http_ok(f"{url}/health", process)
    yield url
    process.stop()


def start_worker(
    env: dict[str, str],
    *,
    log_path: Path,
    name: str,
    concurrency: int = 2,
    extra_args: tuple[str, ...] = (),
    app_module: str = "workers.worker",
    queues: str = WORKER_QUEUES,
) -> ManagedProcess:
    """Start `celery worker` (every queue by default) and wait until it answers a ping."""
    process = ManagedProcess(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app_module,
            "-q",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "--without-mingle",
            "--without-gossip",
            *extra_args,
        ],
        env=env,
        log_path=log_path,
    )
    process.start()
    _wait_for_worker(env, process, name)
    return process


def _wait_for_worker(env: dict[str, str], process: ManagedProcess, name: str) -> None:
    from service.core.celery_config import create_celery_app

    app = create_celery_app(Settings.from_env(env))
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            process.raise_if_exited()
            replies = app.control.ping(timeout=0.5)
            if any(name in host for reply in replies for host in reply):
                return
        raise TimeoutError(f"worker {name} did not answer a ping within 60 s")
    finally:
        app.close()


@pytest.fixture(scope="session")
def worker(base_env: dict[str, str], exchange: str, scratch_dir: Path) -> Iterator[ManagedProcess]:
    """One real prefork worker (two children) consuming every queue, and beside it, as in
    production, one child reserved for scheduled fires, so a test's fire never waits
    behind another test's long user tasks."""
    process = start_worker(base_env, log_path=scratch_dir / "worker.log", name="session")
    reserved = start_worker(
        base_env,
        log_path=scratch_dir / "worker-scheduled.log",
        name="session-scheduled",
        concurrency=1,
        queues="scheduled",
    )
    yield process
    reserved.stop()
    process.stop()


@pytest.fixture(scope="session")
def api_url(base_env: dict[str, str], scratch_dir: Path) -> Iterator[str]:
    """The API served by uvicorn in a subprocess; yields its base URL."""
    port = free_port()
    env = {**base_env, "API_PORT": str(port)}
    process = ManagedProcess(
        [sys.executable, "-m", "service.api"], env=env, log_path=scratch_dir / "api.log"
    )
    process.start()
    url = f"http://127.0.0.1:{port}"
    wait_until_http_ok(f"{url}/health", process)
    yield url
    process.stop()


@pytest.fixture(scope="session")
async def pool(postgres: EmbeddedPostgres, settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool on the session's database."""
    db_pool = await create_pool(settings, application_name="findash-tests")
    yield db_pool
    await db_pool.close()


@pytest.fixture(scope="session")
async def redis_client(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """An asyncio Redis client on the session's server."""
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client session."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the quick pure tests first so a broken core fails fast."""
    items.sort(key=lambda item: 0 if "unit" in item.nodeid else 1)


@pytest.fixture
async def new_user(pool: asyncpg.Pool) -> Callable[..., Awaitable[IssuedKey]]:
    """Create users with fresh API keys: `await new_user(admin=False)`."""

    async def create(*, admin: bool = False) -> IssuedKey:
        async with pool.acquire() as connection:
            return await create_user(
                connection, email=f"{uuid.uuid4().hex[:12]}@test.findash", is_admin=admin
            )

    return create
