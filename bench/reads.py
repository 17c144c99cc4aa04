"""Dashboard reads benchmark: what a dashboard polls, at 32 concurrent clients on one API
process, next to the same reads on the code before this work and next to two floors.

- floors: `GET /health` (no auth, no database) and `GET /api/v1/portfolios/{id}` (the
  API-key lookup plus one indexed row: the least any authenticated read costs);
- holdings of a demo portfolio, alone and while another symbol's quote is written 10 times
  a second (each write makes the next poll check every input); a year of its snapshots,
  with and without their per-day holdings, and again with `If-None-Match` (a poll that finds
  nothing new); a year of AAPL's prices; the caller's task list (60 tasks, the default page
  of 50).

The data is `just dev`'s demo seed (two portfolios, a year of transactions, prices and
snapshots). The baseline ("naive") is the code at `BENCH_READS_BASELINE` (a git ref,
default the commit before this work), exported with `git archive` into a temporary folder
and served by a second API process on the same database; `BENCH_READS_BASELINE=none`
skips it. The two API processes are loaded one at a time, alternating per endpoint, by
this process (the client), so neither steals the other's event loop.

`BENCH_READS_ONLY` (comma-separated words, e.g. `floor,task`) keeps only the reads whose
label contains one of them; `BENCH_READS_SECONDS` (default 4) sets the time per cell, so a
profiler can be attached to the API process (its pid is printed at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.stack import (
    ROOT,
    Stack,
    machine_description,
    percentile,
    process_cpu_seconds,
    running_stack,
)
from service.core import task_registry
from service.core.clock import clock_from_settings, exchange_today
from service.core.database import create_pool
from service.core.users import create_user
from service.dev.embedded import free_port
from tests.processes import ManagedProcess, wait_until_http_ok
from workers.demo_seed import seed_demo_portfolios

CONCURRENCY = 32
SECONDS = float(os.environ.get("BENCH_READS_SECONDS", "4"))
WARMUP_REQUESTS = 64
TASKS = 60
DEFAULT_BASELINE = "cc931f9"
CLOCK_START = "2026-11-27T12:00:00-05:00"


@dataclass(frozen=True)
class Read:
    """One endpoint to load: a label, a path and extra request headers."""

    label: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    expect: int = 200
    # Quotes of a symbol nothing holds, written this many times a second during the load,
    # as a busy system's workers would: each write moves what every kept answer is checked
    # against.
    writes_per_second: float = 0.0


@dataclass(frozen=True)
class Outcome:
    """Requests per second and latencies (seconds) of one closed-loop run."""

    rate: float
    latencies: list[float]
    body_bytes: int
    api_cpu: float
    postgres_cpu: float
    client_cpu: float


async def _seed(stack: Stack, owner_id: int) -> dict[str, Any]:
    """The demo portfolios and a year of prices, and TASKS finished tasks of the owner."""
    settings = stack.settings
    pool = await create_pool(settings, application_name="bench-seed")
    try:
        clock = clock_from_settings(settings)
        await seed_demo_portfolios(pool, owner_id=owner_id, clock=clock)
        portfolio_id = await pool.fetchval(
            "SELECT id FROM portfolios WHERE owner_id = $1 ORDER BY id LIMIT 1", owner_id
        )
        async with pool.acquire() as connection:
            for i in range(TASKS):
                task_id, _ = await task_registry.record_submission(
                    connection,
                    task_id=str(uuid.uuid4()),
                    owner_id=owner_id,
                    name="fetch_market_data",
                    params={"symbols": [f"S{i:04d}"], "period": "1y"},
                    request_id=None,
                )
                await task_registry.record_outcome(
                    connection,
                    task_id=task_id,
                    state="SUCCESS",
                    result={"requested": 1, "stored": 252, "failed": {}},
                )
        end = exchange_today(clock)
        return {"portfolio_id": portfolio_id, "start": end - timedelta(days=365), "end": end}
    finally:
        await pool.close()


def _baseline_tree(ref: str, directory: Path) -> Path | None:
    """Export `service/` and `workers/` at `ref` into `directory`; None if git cannot."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "service", "workers"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        print(f"baseline {ref} skipped: {archive.stderr.decode().strip()}")  # noqa: T201
        return None
    tree = directory / f"baseline-{ref}"
    tree.mkdir()
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _start_api(stack: Stack, *, tree: Path | None, name: str) -> tuple[str, int]:
    """One API process (API_WORKERS=1) serving the code in `tree` (default: this checkout)."""
    port = free_port()
    if tree is None:
        args = [sys.executable, "-m", "service.api"]
    else:
        # The exported tree goes first on sys.path, ahead of this checkout.
        args = [
            sys.executable,
            "-c",
            f"import runpy, sys; sys.path.insert(0, {str(tree)!r}); "
            "runpy.run_module('service.api', run_name='__main__')",
        ]
    process = ManagedProcess(
        args,
        env={**stack.env, "API_PORT": str(port), "API_WORKERS": "1"},
        log_path=stack.directory / f"api-{name}.log",
    )
    process.start()
    stack.processes.append(process)
    url = f"http://127.0.0.1:{port}"
    wait_until_http_ok(f"{url}/health", process)
    return url, process.pid


def _postgres_cpu_seconds(stack: Stack) -> float:
    """CPU seconds of the Postgres server's processes (the postmaster's children)."""
    postmaster = (stack.postgres.data_dir / "postmaster.pid").read_text().split()[0]
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[1] == postmaster:
            total += process_cpu_seconds(int(stat.parent.name))
    return total


async def _load(url: str, key: str, read: Read, *, api_pid: int, stack: Stack) -> Outcome:
    """CONCURRENCY clients, each sending `read` back to back for SECONDS; CPU seconds per
    request of the API process, of Postgres and of this load generator come from /proc."""
    latencies: list[float] = []
    size = 0
    headers = {"Authorization": f"Bearer {key}", **dict(read.headers)}
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one() -> float:
            nonlocal size
            started = time.perf_counter()
            async with session.get(url + read.path) as response:
                body = await response.read()
                if response.status != read.expect:
                    raise RuntimeError(f"{read.label}: {response.status} {body[:300]!r}")
            size = len(body)
            return time.perf_counter() - started

        for _ in range(WARMUP_REQUESTS // CONCURRENCY):
            await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
        deadline = time.perf_counter() + SECONDS

        async def client() -> None:
            while time.perf_counter() < deadline:
                latencies.append(await one())

        writer = (
            asyncio.create_task(_write_quotes(stack, per_second=read.writes_per_second))
            if read.writes_per_second
            else None
        )
        started, cpu = time.perf_counter(), process_cpu_seconds(api_pid)
        postgres_cpu, client_cpu = _postgres_cpu_seconds(stack), time.process_time()
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        cpu = process_cpu_seconds(api_pid) - cpu
        client_cpu = time.process_time() - client_cpu
        postgres_cpu = _postgres_cpu_seconds(stack) - postgres_cpu
    return Outcome(
        rate=len(latencies) / elapsed,
        latencies=latencies,
        body_bytes=size,
        api_cpu=cpu / len(latencies),
        postgres_cpu=postgres_cpu / len(latencies),
        client_cpu=client_cpu / len(latencies),
    )


async def _write_quotes(stack: Stack, *, per_second: float) -> None:
    """Write a quote of an unheld symbol `per_second` times a second until cancelled."""
    connection = await asyncpg.connect(stack.postgres.url)
    try:
        await connection.execute(
            "INSERT INTO assets (symbol) VALUES ('BENCHW') ON CONFLICT (symbol) DO NOTHING"
        )
        while True:
            await connection.execute(
                "INSERT INTO latest_quotes (symbol, price, market_time, source) "
                "VALUES ('BENCHW', random() * 100, now(), 'bench') ON CONFLICT (symbol) "
                "DO UPDATE SET price = excluded.price, market_time = excluded.market_time"
            )
            await asyncio.sleep(1 / per_second)
    finally:
        await connection.close()


async def _etag(url: str, key: str, path: str) -> str | None:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session,
        session.get(url + path) as response,
    ):
        await response.read()
        return response.headers.get("ETag")


def _reads(seed: dict[str, Any]) -> list[Read]:
    portfolio = f"/api/v1/portfolios/{seed['portfolio_id']}"
    year = f"start={seed['start']}&end={seed['end']}"
    return [
        Read("floor: GET /health (no auth, no database)", "/health"),
        Read("floor: GET one portfolio (auth + one row)", portfolio),
        Read("holdings", f"{portfolio}/holdings"),
        Read(
            "holdings, with another symbol's quote written 10 times a second",
            f"{portfolio}/holdings",
            writes_per_second=10,
        ),
        Read("a year of snapshots with holdings", f"{portfolio}/snapshots?{year}&holdings=true"),
        Read(
            "a year of snapshots, holdings=false",
            f"{portfolio}/snapshots?{year}&holdings=false",
        ),
        Read("a year of AAPL prices", f"/api/v1/assets/AAPL/prices?{year}"),
        Read("task list (page of 50)", "/api/v1/tasks"),
    ]


def _ms(value: float, digits: int = 1) -> str:
    return f"{value * 1000:.{digits}f}"


def _cell(outcome: Outcome | None) -> str:
    if outcome is None:
        return "n/a"
    return (
        f"{outcome.rate:,.0f}/s, p50 {_ms(percentile(outcome.latencies, 50))} / "
        f"p99 {_ms(percentile(outcome.latencies, 99))} ms, CPU per request: API "
        f"{_ms(outcome.api_cpu, 2)} / Postgres {_ms(outcome.postgres_cpu, 2)} / client "
        f"{_ms(outcome.client_cpu, 2)} ms ({outcome.body_bytes:,} B)"
    )


def run() -> dict[str, Any]:
    """Seed, start both API processes, load each read on each, and return the table."""
    ref = os.environ.get("BENCH_READS_BASELINE", DEFAULT_BASELINE)
    with (
        tempfile.TemporaryDirectory(prefix="findash-bench-reads-") as scratch,
        running_stack(CLOCK_START=CLOCK_START) as stack,
    ):
        owner_id, key = asyncio.run(_new_user(stack))
        seed = asyncio.run(_seed(stack, owner_id))
        ours_url, ours_pid = _start_api(stack, tree=None, name="ours")
        tree = _baseline_tree(ref, Path(scratch)) if ref != "none" else None
        base_url, base_pid = (
            _start_api(stack, tree=tree, name="baseline") if tree is not None else (None, 0)
        )
        print(f"API pids: this checkout {ours_pid}, baseline {base_pid or 'none'}")  # noqa: T201
        reads = _reads(seed)
        snapshots_path = next(read.path for read in reads if "holdings=false" in read.path)
        etag = asyncio.run(_etag(ours_url, key, snapshots_path))
        if etag is not None:
            reads.append(
                Read(
                    "a year of snapshots (no holdings), If-None-Match → 304",
                    snapshots_path,
                    headers=(("If-None-Match", etag),),
                    expect=304,
                )
            )
        results: dict[str, str] = {
            "data": (
                f"demo portfolio {seed['portfolio_id']}, {seed['start']}..{seed['end']}, "
                f"{CONCURRENCY} clients × {SECONDS:.0f} s per cell, one API process each"
            ),
            "columns": f"baseline ({ref}) | this checkout",
        }
        only = [word for word in os.environ.get("BENCH_READS_ONLY", "").split(",") if word]
        for read in reads:
            if only and not any(word in read.label for word in only):
                continue
            base = None
            # holdings=false and If-None-Match are new: the baseline would answer otherwise.
            if base_url is not None and "holdings=false" not in read.path and not read.headers:
                base = asyncio.run(_load(base_url, key, read, api_pid=base_pid, stack=stack))
            ours = asyncio.run(_load(ours_url, key, read, api_pid=ours_pid, stack=stack))
            results[read.label] = f"{_cell(base)} | {_cell(ours)}"
    return {"machine": machine_description(), "results": results}


async def _new_user(stack: Stack) -> tuple[int, str]:
    connection = await asyncpg.connect(stack.postgres.url)
    try:
        issued = await create_user(connection, email=f"reads-{uuid.uuid4().hex[:6]}@x")
        return issued.user_id, issued.api_key
    finally:
        await connection.close()
