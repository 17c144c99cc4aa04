"""`just dev`: the whole system on one machine, with nothing installed but uv.

Starts private Postgres and Redis (unless DATABASE_URL / REDIS_URL point
elsewhere), applies migrations, seeds the demo data, writes `.dev/env` and
then supervises the simulated exchange, API, worker and scheduler with
honcho. Ctrl-C stops every process, then the embedded servers.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

from honcho.manager import Manager

from service.core import users
from service.core.contracts import QUEUE_SCHEDULED, WORKER_QUEUES
from service.core.database import create_pool
from service.core.dev_env import DEV_ENV_FILE, read_env_file, write_env_file
from service.core.logs import configure_logging, get_logger
from service.core.migrations import migrate
from service.core.settings import Settings
from service.dev.embedded import EmbeddedPostgres, EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]
DEV_DIR = ROOT / ".dev"
log = get_logger("service.dev")

# Marks in .dev/env that a URL there belongs to a server `just dev` started itself.
_EMBEDDED_MARKS = {
    "DATABASE_URL": "FINDASH_EMBEDDED_DATABASE",
    "REDIS_URL": "FINDASH_EMBEDDED_REDIS",
}


def user_supplied_url(
    name: str, environ: Mapping[str, str], previous: Mapping[str, str]
) -> str | None:
    """The URL the user set for `name`, ignoring one an earlier `just dev` wrote to .dev/env."""
    value = environ.get(name) or None
    if value and previous.get(_EMBEDDED_MARKS[name]) == "1" and previous.get(name) == value:
        return None
    return value


def process_commands(*, python: str) -> dict[str, str]:
    """The processes honcho supervises, as shell command lines."""
    return {
        "exchange": f"{python} -m workers.market_data.simulated_exchange",
        "api": f"{python} -m service.api",
        "worker": f"{python} -m celery -A workers.worker -q worker -P prefork -c 2 "
        f"-Q {WORKER_QUEUES} -E -n dev@%h",
        # Capacity user submits cannot take: scheduled fires only.
        "worker-scheduled": f"{python} -m celery -A workers.worker -q worker -P prefork -c 1 "
        f"-Q {QUEUE_SCHEDULED} -E -n scheduled@%h",
        "scheduler": f"{python} -m service.scheduler",
    }


DEV_WORKER_METRICS_PORT = 9464
DEV_SCHEDULER_METRICS_PORT = 9466  # .env.example suggests the same ports


def metrics_env(settings: Settings) -> dict[str, dict[str, str]]:
    """Each supervised process's metrics port, all distinct: the two worker instances take
    WORKER_METRICS_PORT and the next port, the scheduler SCHEDULER_METRICS_PORT (dev
    defaults when they are 0). The API serves /metrics on its own port."""
    worker = settings.worker_metrics_port or DEV_WORKER_METRICS_PORT
    scheduler = settings.scheduler_metrics_port or DEV_SCHEDULER_METRICS_PORT
    if scheduler in (worker, worker + 1):
        scheduler = worker + 2
    return {
        "worker": {"WORKER_METRICS_PORT": str(worker)},
        "worker-scheduled": {"WORKER_METRICS_PORT": str(worker + 1)},
        "scheduler": {"SCHEDULER_METRICS_PORT": str(scheduler)},
    }


def main() -> None:
    """Run the development stack until Ctrl-C."""
    environ = dict(os.environ)
    previous = read_env_file(DEV_ENV_FILE)
    environ.setdefault("LOG_FORMAT", "console")
    database_url = user_supplied_url("DATABASE_URL", environ, previous)
    redis_url = user_supplied_url("REDIS_URL", environ, previous)
    with ExitStack() as stack:
        embedded: dict[str, str] = {}
        if database_url is None:
            postgres = EmbeddedPostgres(DEV_DIR / "postgres")
            postgres.start()
            stack.callback(postgres.stop)
            database_url = postgres.url
            embedded[_EMBEDDED_MARKS["DATABASE_URL"]] = "1"
        if redis_url is None:
            redis = EmbeddedRedis(DEV_DIR / "redis", persistent=True)
            redis.start()
            stack.callback(redis.stop)
            redis_url = redis.url
            embedded[_EMBEDDED_MARKS["REDIS_URL"]] = "1"
        environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url)
        settings = Settings.from_env(environ)
        environ.setdefault("YAHOO_BASE_URL", settings.sim_exchange_url)
        if environ["YAHOO_BASE_URL"] == settings.sim_exchange_url:
            # The local exchange takes far more than the polite default meant for Yahoo.
            environ.setdefault("YAHOO_RATE_LIMIT", "500/second")
        settings = Settings.from_env(environ)
        configure_logging(service="dev", level=settings.log_level, fmt=settings.log_format)
        asyncio.run(migrate(settings.database_url))
        extra = asyncio.run(seed_demo(settings, environ=environ))
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        shared = {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "YAHOO_BASE_URL": settings.yahoo_base_url,
            "FINDASH_API_URL": api_url,
            **extra,
            **embedded,
        }
        write_env_file(DEV_ENV_FILE, shared)
        environ.update(shared)
        ports = metrics_env(settings)
        print_banner(shared, api_url=api_url, metrics=ports, host=settings.metrics_host)
        manager = Manager()
        for name, command in process_commands(python=shlex.quote(sys.executable)).items():
            env = {**environ, **ports.get(name, {})}
            manager.add_process(name, command, env=env, cwd=str(ROOT))
        manager.loop()
    sys.exit(manager.returncode or 0)


def print_banner(
    values: Mapping[str, str],
    *,
    api_url: str,
    metrics: Mapping[str, Mapping[str, str]] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Tell the developer where everything is (secrets included: this is their own stack)."""
    endpoints = [
        f"  metrics    {name}: http://{host}:{port}/metrics"
        for name, env in (metrics or {}).items()
        for port in env.values()
    ]
    lines = [
        "",
        "findash dev stack",
        f"  API        {api_url}   (try: curl {api_url}/ready)",
        f"  OpenAPI    {api_url}/schema",
        f"  metrics    api: {api_url}/metrics",
        *endpoints,
        *(f"  {key:<22} {value}" for key, value in values.items()),
        f"  written to {DEV_ENV_FILE.relative_to(ROOT)}; Ctrl-C stops everything",
        "",
    ]
    print("\n".join(lines), flush=True)  # noqa: T201 - a banner for the human at the terminal


DEMO_EMAIL = "demo@findash.local"


async def seed_demo(settings: Settings, *, environ: Mapping[str, str]) -> dict[str, str]:
    """Create the demo user (an admin, so worker stats work) with a fresh API key, and its
    two demo portfolios with a year of transactions, prices and snapshots (idempotent).

    Returns the .dev/env entries for the CLI: the key and the user id.
    """
    pool = await create_pool(settings, application_name="findash-dev-seed")
    try:
        async with pool.acquire() as connection:
            issued = await users.create_user(connection, email=DEMO_EMAIL, is_admin=True)
            # Only the key in the current .dev/env stays valid.
            await users.revoke_other_keys(
                connection, user_id=issued.user_id, keep_key_id=issued.key_id
            )
    finally:
        await pool.close()
    # A separate process: the senders' side (service/) never imports workers/.
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "workers.demo_seed", str(issued.user_id)],
        env=environ,
        cwd=ROOT,
        check=True,
    )
    return {"FINDASH_API_KEY": issued.api_key, "FINDASH_DEMO_USER_ID": str(issued.user_id)}


if __name__ == "__main__":
    main()
