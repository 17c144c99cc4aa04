"""Scraping every findash metrics endpoint after real work (issue 12), once per session.

`metrics_scrape` (a session fixture, registered as a plugin in tests/conftest.py) starts an
API, a prefork worker recycling its child after every task and a scheduler replica, all on
a private Redis database so no other worker takes their tasks; does real work through them;
and scrapes each endpoint over HTTP. `scraped_names(scrape)` is the set of names a
Prometheus rule or dashboard may use: every family name and every sample name
(`findash_tasks_total`, `findash_task_duration_seconds_bucket`, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from service.core.users import create_user
from service.dev.embedded import EmbeddedRedis, free_port
from tests.api_client import Api
from tests.conftest import PINNED_LAST_SESSION, start_worker, unpinned
from tests.processes import ManagedProcess, serve_api

PROBE_SCHEDULER = {
    "SCHEDULER_SCHEDULE": "probe",
    "SCHEDULER_HEARTBEAT_SECONDS": "0.5",
    "SCHEDULER_ELECTION_SECONDS": "0.2",
    "SCHEDULER_SESSION_TIMEOUT_SECONDS": "5",
    "SCHEDULER_CATCHUP_SECONDS": "2",
}
# Used by no other test (fair share uses 6 and 7, the busy worker 11, stuck tasks 12, the
# simulated week 13), and emptied before use: leftovers would be counted as this run's work.
PRIVATE_REDIS_DB = 9


@dataclass
class Endpoint:
    """One scrape of one endpoint: its text and its samples."""

    text: str
    samples: list[Sample]
    families: set[str]

    def value(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def has(self, name: str) -> bool:
        """Whether any sample is called `name`."""
        return any(s.name == name for s in self.samples)


def parse(text: str) -> Endpoint:
    """Parse an exposition with prometheus-client's own parser."""
    families = list(text_string_to_metric_families(text))
    return Endpoint(
        text=text,
        samples=[s for family in families for s in family.samples],
        families={family.name for family in families},
    )


@dataclass
class MetricsScrape:
    """What the session's metrics stack did, and what each endpoint said afterwards."""

    api: Endpoint
    worker: Endpoint
    scheduler: Endpoint
    worker_again: Endpoint
    api_before: Endpoint
    private: set[str]
    task_states: dict[str, list[str]]
    good_symbol: str
    bars_stored: int
    child_pids_seen: int
    stale_before: float
    stale_after: float
    ledger_sent: int
    extra: dict[str, Any] = field(default_factory=dict)

    def endpoints(self) -> Iterable[Endpoint]:
        """Every scrape taken."""
        return (self.api, self.worker, self.scheduler, self.worker_again, self.api_before)


def scraped_names(scrape: MetricsScrape) -> set[str]:
    """Every family and sample name the session's scrapes returned."""
    return {
        name
        for endpoint in scrape.endpoints()
        for name in (*endpoint.families, *(s.name for s in endpoint.samples))
    }


async def scrape(http: aiohttp.ClientSession, url: str) -> Endpoint:
    """GET `url` (a /metrics endpoint) and parse it."""
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(await response.text())


async def _until(
    http: aiohttp.ClientSession, url: str, ready: Any, *, within: float = 60
) -> Endpoint:
    """Scrape `url` until `ready(endpoint)` (a process still starting refuses at first)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            endpoint = await scrape(http, url)
        except aiohttp.ClientConnectorError:
            if asyncio.get_running_loop().time() > deadline:
                raise
        else:
            if ready(endpoint) or asyncio.get_running_loop().time() > deadline:
                return endpoint
        await asyncio.sleep(0.3)


def _private_redis(redis_server: EmbeddedRedis) -> str:
    return redis_server.url.rsplit("/", 1)[0] + f"/{PRIVATE_REDIS_DB}"


@contextlib.contextmanager
def _scheduler(env: dict[str, str], log_path: Path) -> Iterator[ManagedProcess]:
    process = ManagedProcess(
        [sys.executable, "-m", "service.scheduler"], env=env, log_path=log_path
    )
    process.start()
    try:
        yield process
    finally:
        process.stop(timeout=10)


async def _final(api: Api, task_id: str) -> str:
    status = await api.wait_finished(task_id, within=60)
    return str(status["state"])


@pytest.fixture(scope="session")
async def metrics_scrape(
    base_env: dict[str, str],
    exchange: str,
    redis_server: EmbeddedRedis,
    pool: asyncpg.Pool,
    scratch_dir: Path,
) -> MetricsScrape:
    """Real work through a private API, worker and scheduler, then a scrape of each."""
    log_dir = scratch_dir / "metrics"
    log_dir.mkdir(exist_ok=True)
    worker_port, scheduler_port = free_port(), free_port()
    env = {
        **base_env,
        "REDIS_URL": _private_redis(redis_server),
        "METRICS_HOST": "127.0.0.1",
        "WORKER_METRICS_DIR": str(log_dir / "prom"),
    }
    flush = redis.Redis.from_url(_private_redis(redis_server))
    try:
        flush.flushdb()
    finally:
        flush.close()
    worker = start_worker(
        {**env, "WORKER_METRICS_PORT": str(worker_port)},
        log_path=log_dir / "worker.log",
        name="metrics",
        concurrency=1,
        extra_args=("--max-tasks-per-child=1",),
    )
    await pool.execute("TRUNCATE schedule_fires, scheduler_jobs, scheduler_probe_runs")
    scheduler_env = {
        **unpinned(env),
        **PROBE_SCHEDULER,
        "SCHEDULER_METRICS_PORT": str(scheduler_port),
    }
    worker_url = f"http://127.0.0.1:{worker_port}/metrics"
    scheduler_url = f"http://127.0.0.1:{scheduler_port}/metrics"
    try:
        with (
            serve_api(env, log_path=log_dir / "api.log") as (api_url, _),
            _scheduler(scheduler_env, log_dir / "scheduler.log") as scheduler,
        ):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                result = await _work(
                    http,
                    pool,
                    api_url=api_url,
                    worker_url=worker_url,
                    scheduler_url=scheduler_url,
                    scheduler=scheduler,
                    metrics_dir=log_dir / "prom" / f"worker-{worker_port}",
                )
    finally:
        worker.stop()
    # Everything is stopped before the other tests run: this scheduler would otherwise keep
    # leading and writing fires in the shared database for the rest of the session.
    return result


async def _work(
    http: aiohttp.ClientSession,
    pool: asyncpg.Pool,
    *,
    api_url: str,
    worker_url: str,
    scheduler_url: str,
    scheduler: ManagedProcess,
    metrics_dir: Path,
) -> MetricsScrape:
    async with pool.acquire() as connection:
        issued = await create_user(
            connection, email=f"{uuid.uuid4().hex[:12]}@metrics.findash", is_admin=False
        )
    api = Api(http, api_url, issued.api_key)
    tag = uuid.uuid4().hex[:4].upper()
    good, unknown, good_info = f"MG{tag}", f"ZZ{tag}", f"MI{tag}"
    private = {good, unknown, good_info, str(issued.user_id), issued.api_key}
    api_before = await scrape(http, f"{api_url}/metrics")

    states: dict[str, list[str]] = {"fetch_market_data": [], "fetch_asset_info": []}
    for name, path, body in (
        ("fetch_market_data", "market-data", {"symbols": [good]}),
        ("fetch_market_data", "market-data", {"symbols": [unknown]}),
        ("fetch_asset_info", "asset-info", {"symbol": unknown}),
    ):
        status, answer = await api.submit(path, body)
        assert status == 202, answer
        private.add(answer["task_id"])
        states[name].append(await _final(api, answer["task_id"]))
    # The same Idempotency-Key twice: the second answers from the first (a duplicate).
    key = {"Idempotency-Key": uuid.uuid4().hex}
    status, first = await api.submit("asset-info", {"symbol": good_info}, headers=key)
    assert status == 202, first
    status, again = await api.submit("asset-info", {"symbol": good_info}, headers=key)
    assert again == first, (status, again)
    private.add(first["task_id"])
    states["fetch_asset_info"].append(await _final(api, first["task_id"]))
    status, _ = await api.submit("market-data", {"symbols": "not a list"})
    assert status == 400
    async with http.get(f"{api_url}/no/such/{good}") as response:
        assert response.status == 404

    sched = await _until(
        http,
        scheduler_url,
        lambda e: e.value("findash_scheduler_fires_total", outcome="sent") >= 2,
    )
    scheduler.raise_if_exited()
    ledger_sent = await pool.fetchval("SELECT count(*) FROM schedule_fires WHERE state = 'sent'")
    worker_scrape = await _until(
        http,
        worker_url,
        lambda e: e.value("findash_tasks_total", task="scheduler_probe", state="SUCCESS") >= 1,
    )
    api_scrape = await _until(
        http, f"{api_url}/metrics", lambda e: e.value("findash_workers_alive") >= 1
    )
    bars = await pool.fetchval("SELECT count(*) FROM daily_prices WHERE symbol = $1", good)

    # Holding a symbol nobody priced makes exactly one more stale held symbol.
    stale_before = (await scrape(http, f"{api_url}/metrics")).value("findash_stale_held_symbols")
    held = f"MS{tag}"
    private.add(held)
    portfolio = await pool.fetchval(
        "INSERT INTO portfolios (owner_id, name, base_currency) VALUES ($1, 'metrics', 'USD') "
        "RETURNING id",
        issued.user_id,
    )
    await pool.execute("INSERT INTO assets (symbol) VALUES ($1) ON CONFLICT DO NOTHING", held)
    await pool.execute(
        "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price, fee) "
        "VALUES ($1, 'BUY', $2, $3, 1, 1, 0)",
        portfolio,
        PINNED_LAST_SESSION - timedelta(days=30),
        held,
    )
    stale_after = (await scrape(http, f"{api_url}/metrics")).value("findash_stale_held_symbols")

    # One more task in yet another child: nothing the first scrape counted goes backwards.
    status, answer = await api.submit("asset-info", {"symbol": good})
    assert status == 202, answer
    private.add(answer["task_id"])
    states["fetch_asset_info"].append(await _final(api, answer["task_id"]))
    worker_again = await _until(
        http,
        worker_url,
        lambda e: (
            e.value("findash_tasks_total", task="fetch_asset_info")
            >= len(states["fetch_asset_info"])
        ),
    )
    files = await asyncio.to_thread(lambda: list(metrics_dir.glob("counter_*.db")))
    pids = {path.stem.rsplit("_", 1)[-1] for path in files}
    return MetricsScrape(
        api=api_scrape,
        worker=worker_scrape,
        scheduler=sched,
        worker_again=worker_again,
        api_before=api_before,
        private=private,
        task_states=states,
        good_symbol=good,
        bars_stored=int(bars),
        child_pids_seen=len(pids),
        stale_before=stale_before,
        stale_after=stale_after,
        ledger_sent=int(ledger_sent),
        extra={"files": sorted(path.name for path in files)},
    )
