"""`just soak [--minutes N]`: the whole stack under mixed load on a fast clock, checked
for errors and leaks (issue 11, item 11). Not part of `just test`.

A throwaway stack on loopback (embedded Postgres and Redis, the simulated exchange, one
general worker, the API and a scheduler leader on the `market` schedule) runs on a clock
from Monday 06:00 New York time at SOAK_SPEED times real time, so the run holds many scheduled
fires. Users submit fetches, price updates and performance runs, poll every task to its
end, and follow some over SSE. Every SAMPLE_SECONDS it samples the worker's RSS (main
process plus prefork children), Postgres connections (pg_stat_activity client backends)
and Redis clients (CLIENT LIST). It passes when there was no 5xx, no client error, no
FAILURE task, RSS grew under 10 % after warm-up and the connection counts stayed flat.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from bench.stack import Stack, machine_description, running_stack
from service.core.trading_calendar import EXCHANGE_TZ
from service.core.users import create_user
from tests.processes import ManagedProcess

SOAK_START = datetime(2026, 11, 16, 6, 0, tzinfo=EXCHANGE_TZ)  # a Monday
SOAK_SPEED = 300  # one simulated hour every 12 s
STARTUP_SECONDS = 25
SAMPLE_SECONDS = 5.0
USERS = 3
SUBMITTERS_PER_USER = 1  # about 3 submits a second: under what one worker (-c 2) clears
STREAMS_PER_USER = 2  # under SSE_STREAMS_PER_KEY (5)
UNIVERSE = [f"SOAK{i:02d}" for i in range(40)]
RSS_GROWTH_LIMIT = 0.10
# A pool may open or close a connection between samples; growth beyond this is a leak.
CONNECTION_SLACK = 2
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}


@dataclass(frozen=True)
class Sample:
    """One reading of the stack's resources."""

    at: float
    worker_rss_mb: float
    postgres_connections: int
    redis_clients: int
    # Redis clients by database and last command, to tell a leak from clients opened late.
    redis_kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class Load:
    """What the clients did and saw."""

    submits: Counter[int] = field(default_factory=Counter)
    polls: int = 0
    streams: int = 0
    stream_events: int = 0
    server_errors: list[str] = field(default_factory=list)
    client_errors: list[str] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    to_poll: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    to_stream: dict[str, asyncio.Queue[str]] = field(default_factory=dict)


def _rss_mb(pid: int) -> float:
    """VmRSS of `pid` and its direct children (the prefork pool), in MiB."""
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total_kb = 0
    for one in pids:
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


async def _seed_users(database_url: str) -> list[str]:
    """USERS users, each with a funded portfolio holding three symbols; their API keys."""
    keys = []
    connection = await asyncpg.connect(database_url)
    try:
        for n in range(USERS):
            issued = await create_user(connection, email=f"soak-{n}-{uuid.uuid4().hex[:6]}@x")
            keys.append(issued.api_key)
            portfolio = await connection.fetchval(
                "INSERT INTO portfolios (owner_id, name) VALUES ($1, 'main') RETURNING id",
                issued.user_id,
            )
            await connection.execute(
                "INSERT INTO transactions (portfolio_id, type, date, amount) "
                "VALUES ($1, 'DEPOSIT', $2, 100000)",
                portfolio,
                date(2026, 10, 1),
            )
            for symbol in UNIVERSE[n * 3 : n * 3 + 3]:
                await connection.execute(
                    "INSERT INTO assets (symbol) VALUES ($1) ON CONFLICT DO NOTHING", symbol
                )
                await connection.execute(
                    "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price)"
                    " VALUES ($1, 'BUY', $2, $3, 10, 100)",
                    portfolio,
                    date(2026, 10, 1),
                    symbol,
                )
    finally:
        await connection.close()
    return keys


def _submission(rng: random.Random) -> tuple[str, dict[str, Any]]:
    roll = rng.random()
    if roll < 0.6:
        return "market-data", {"symbols": rng.sample(UNIVERSE, rng.randint(1, 4)), "period": "1mo"}
    if roll < 0.8:
        return "portfolio-prices", {}
    return "portfolio-performance", {"days": rng.choice([5, 10, 30])}


def _check(load: Load, response: aiohttp.ClientResponse, what: str) -> None:
    if response.status >= 500:
        load.server_errors.append(f"{what}: {response.status}")


async def _submitter(
    http: aiohttp.ClientSession, api: str, key: str, load: Load, seed: int
) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {key}"}
    while True:
        path, body = _submission(rng)
        async with http.post(f"{api}/api/v1/tasks/{path}", json=body, headers=headers) as response:
            load.submits[response.status] += 1
            _check(load, response, f"POST {path}")
            if response.status in (200, 202):
                task_id = (await response.json())["task_id"]
                if response.status == 202:
                    load.task_ids.append(task_id)
                load.to_poll.put_nowait(f"{key} {task_id}")
                if rng.random() < 0.3:
                    load.to_stream.setdefault(key, asyncio.Queue()).put_nowait(task_id)
            elif response.status != 429:
                load.client_errors.append(f"POST {path}: {response.status} {await response.text()}")
        await asyncio.sleep(rng.uniform(0.4, 1.4))


async def _poller(http: aiohttp.ClientSession, api: str, load: Load) -> None:
    while True:
        key, task_id = (await load.to_poll.get()).split()
        headers = {"Authorization": f"Bearer {key}"}
        while True:
            async with http.get(f"{api}/api/v1/tasks/status/{task_id}", headers=headers) as r:
                load.polls += 1
                _check(load, r, "GET status")
                if r.status != 200:
                    load.client_errors.append(f"GET status: {r.status}")
                    break
                if (await r.json())["state"] in TERMINAL:
                    break
            await asyncio.sleep(0.5)


async def _streamer(http: aiohttp.ClientSession, api: str, load: Load, key: str) -> None:
    queue = load.to_stream.setdefault(key, asyncio.Queue())
    while True:
        task_id = await queue.get()
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        async with http.get(f"{api}/api/v1/tasks/{task_id}/events", headers=headers) as r:
            load.streams += 1
            _check(load, r, "GET events")
            if r.status != 200:
                load.client_errors.append(f"GET events: {r.status}")
                continue
            async for line in r.content:
                if line.startswith(b"data:"):
                    load.stream_events += 1


async def _sample(worker: ManagedProcess, pg: asyncpg.Connection, redis: aioredis.Redis) -> Sample:
    connections = await pg.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    )
    clients = await redis.client_list()
    kinds = Counter(f"db{c.get('db')} {c.get('cmd')}" for c in clients)
    return Sample(
        at=time.monotonic(),
        worker_rss_mb=_rss_mb(worker.pid),
        postgres_connections=connections,
        redis_clients=len(clients),
        redis_kinds=dict(kinds),
    )


async def _drive(
    stack: Stack, *, api: str, keys: list[str], worker: ManagedProcess, seconds: float
) -> tuple[Load, list[Sample], dict[str, int], dict[str, int], list[str]]:
    load = Load()
    pg = await asyncpg.connect(stack.postgres.url)
    redis = aioredis.Redis.from_url(stack.redis.url)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
    samples: list[Sample] = []
    async with aiohttp.ClientSession(timeout=timeout) as http:
        clients = [
            asyncio.ensure_future(_submitter(http, api, key, load, seed=n * 10 + k))
            for n, key in enumerate(keys)
            for k in range(SUBMITTERS_PER_USER)
        ]
        clients += [asyncio.ensure_future(_poller(http, api, load)) for _ in range(4)]
        clients += [
            asyncio.ensure_future(_streamer(http, api, load, key))
            for key in keys
            for _ in range(STREAMS_PER_USER)
        ]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for process in stack.processes:
                process.raise_if_exited()
            for client in clients:
                if client.done() and client.exception() is not None:
                    load.client_errors.append(repr(client.exception()))
                    clients.remove(client)
            samples.append(await _sample(worker, pg, redis))
            await asyncio.sleep(min(SAMPLE_SECONDS, max(0.0, deadline - time.monotonic())))
        samples.append(await _sample(worker, pg, redis))
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    for _ in range(120):  # let the last tasks end
        if not await pg.fetchval(
            "SELECT count(*) FROM tasks WHERE state NOT IN ('SUCCESS', 'FAILURE', 'REVOKED')"
        ):
            break
        await asyncio.sleep(0.5)
    states = dict(await pg.fetch("SELECT state, count(*) FROM tasks GROUP BY state"))
    fires = dict(await pg.fetch("SELECT state, count(*) FROM schedule_fires GROUP BY state"))
    failures = [
        f"{r['name']}: {r['error']}"
        for r in await pg.fetch("SELECT name, error::text FROM tasks WHERE state = 'FAILURE'")
    ]
    await pg.close()
    await redis.aclose()
    return load, samples, states, fires, failures


@dataclass(frozen=True)
class Verdict:
    """One checked measure."""

    measure: str
    value: str
    ok: bool


def verdicts(
    load: Load, samples: list[Sample], states: dict[str, int], failures: list[str]
) -> list[Verdict]:
    """The soak's checks over what the run saw; warm-up is the first quarter of the run."""
    start, end = samples[0].at, samples[-1].at
    steady = [s for s in samples if s.at >= start + (end - start) / 4]
    third = max(1, len(steady) // 3)
    first, last = steady[:third], steady[-third:]
    rss_before = sum(s.worker_rss_mb for s in first) / len(first)
    rss_after = sum(s.worker_rss_mb for s in last) / len(last)
    growth = rss_after / rss_before - 1

    def flat(name: str, pick: Any) -> Verdict:
        before, after = max(map(pick, first)), max(map(pick, last))
        every = [pick(s) for s in samples]
        return Verdict(
            f"{name} (after warm-up: first third max → last third max; whole run min–max)",
            f"{before} → {after}; {min(every)}–{max(every)}",
            after <= before + CONNECTION_SLACK,
        )

    unfinished = sum(n for state, n in states.items() if state not in TERMINAL)
    return [
        Verdict("5xx responses", str(len(load.server_errors)), not load.server_errors),
        Verdict("client errors", str(len(load.client_errors)), not load.client_errors),
        Verdict("FAILURE tasks", str(len(failures)), not failures),
        Verdict("tasks not finished at the end", str(unfinished), unfinished == 0),
        Verdict(
            "worker RSS after warm-up (MiB, mean of first → last third)",
            f"{rss_before:.0f} → {rss_after:.0f} ({growth:+.1%}; limit +10 %)",
            growth < RSS_GROWTH_LIMIT,
        ),
        flat("Postgres connections", lambda s: s.postgres_connections),
        flat("Redis clients", lambda s: s.redis_clients),
    ]


def _print_table(rows: list[tuple[str, str, str]]) -> None:
    print("| measure | value | check |\n|---|---|---|")  # noqa: T201
    for measure, value, check in rows:
        print(f"| {measure} | {value} | {check} |")  # noqa: T201


def run(minutes: float) -> bool:
    """Run the soak for `minutes` of load and print its summary; True when every check held."""
    anchor = float(int(time.time()) + STARTUP_SECONDS)
    with running_stack(
        durable=False,
        CLOCK_START=SOAK_START.isoformat(),
        CLOCK_ANCHOR=str(anchor),
        CLOCK_SPEED=str(SOAK_SPEED),
        SCHEDULER_SCHEDULE="market",
        SCHEDULER_HEARTBEAT_SECONDS="0.5",
        SCHEDULER_CATCHUP_SECONDS="1",
    ) as stack:
        keys = asyncio.run(_seed_users(stack.postgres.url))
        stack.start_exchange(latency_ms=5)
        worker = stack.start_worker(name="soak-worker", concurrency=2)
        api = stack.start_api()
        scheduler = ManagedProcess(
            [sys.executable, "-m", "service.scheduler"],
            env=stack.env,
            log_path=stack.directory / "scheduler.log",
        )
        scheduler.start()
        stack.processes.append(scheduler)
        time.sleep(max(0.0, anchor - time.time()))
        started = time.monotonic()
        load, samples, states, fires, failures = asyncio.run(
            _drive(stack, api=api, keys=keys, worker=worker, seconds=minutes * 60)
        )
        drain = time.monotonic() - started - minutes * 60
    checks = verdicts(load, samples, states, failures)
    simulated = timedelta(seconds=int(minutes * 60 * SOAK_SPEED))
    print(f"\n### soak: {minutes:g} min, {machine_description()}\n")  # noqa: T201
    rows = [
        (
            "load (real; simulated from Mon 06:00 ET); then until every task ended",
            f"{minutes * 60:.0f} s; {simulated}; {drain:.0f} s",
            "",
        ),
        ("submits by status", ", ".join(f"{k}: {v}" for k, v in sorted(load.submits.items())), ""),
        ("new tasks by end state", ", ".join(f"{k}: {v}" for k, v in sorted(states.items())), ""),
        (
            "status polls; SSE streams (events)",
            f"{load.polls}; {load.streams} ({load.stream_events})",
            "",
        ),
        ("scheduled fires by state", ", ".join(f"{k}: {v}" for k, v in sorted(fires.items())), ""),
        ("samples", str(len(samples)), ""),
    ]
    rows += [(v.measure, v.value, "ok" if v.ok else "FAILED") for v in checks]
    _print_table(rows)
    if samples:
        print("\nRedis clients by database and last command, first and last sample:")  # noqa: T201
        for name in sorted(set(samples[0].redis_kinds) | set(samples[-1].redis_kinds)):
            first, last = samples[0].redis_kinds.get(name, 0), samples[-1].redis_kinds.get(name, 0)
            print(f"  {name}: {first} -> {last}")  # noqa: T201
    for problem in (load.server_errors + load.client_errors + failures)[:20]:
        print(f"- {problem}")  # noqa: T201
    return all(v.ok for v in checks)


def main(argv: list[str] | None = None) -> int:
    """Parse `--minutes` (default 3, at most 10) and run the soak; exit 1 on a failed check."""
    parser = argparse.ArgumentParser(prog="just soak", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="minutes of load (default 3, at most 10)"
    )
    minutes = parser.parse_args(argv).minutes
    if not 0 < minutes <= 10:
        parser.error("--minutes must be in (0, 10]")
    return 0 if run(minutes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
