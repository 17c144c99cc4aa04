"""`python -m bench market_data`: fetch_market_data end to end against the naive approach and
the practical floor, plus the 5,000-symbol case and a provider-limited run with two workers.

Everything runs on this machine: embedded Postgres and Redis, the simulated exchange at
50 ms latency, the API (uvicorn) and Celery prefork workers, each a real subprocess.

- findash: API submit → SUCCESS (500 symbols, 1 year each), rows checked in Postgres.
- naive: the seed's way, a sequential loop of blocking HTTP requests and one INSERT per row.
- bare: the same fetches with aiohttp + gather and the same COPY-upsert: the floor.
- 5,000 symbols, 1 year each, through findash.
- provider-limited: the exchange enforces 10 requests/s (429 beyond), findash's limiter is set
  to the same rate, two single-process workers share the job; time vs N ÷ rate, and 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.stack import Stack, running_stack
from workers.market_data.providers.yahoo_chart import parse_chart
from workers.market_data.store import bar_rows, upsert_bars

LATENCY_MS = 50
SYMBOLS = 500
BIG = 5000
LIMITED_SYMBOLS = 100
LIMITED_RATE = 10
ROUNDS = 3


def children(pid: int) -> list[int]:
    """Direct children of `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def peak_rss_mb(pid: int) -> float:
    """The largest peak RSS (VmHWM) of `pid` and its children, in MB."""
    peaks = []
    for member in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=0.0)


def symbols(prefix: str, count: int) -> list[str]:
    """Fresh symbols, so every run inserts rather than finds rows already there."""
    tag = uuid.uuid4().hex[:4].upper()
    return [f"{prefix}{tag}{i}" for i in range(count)]


async def findash_run(
    api: str, key: str, names: list[str], *, period: str = "1y"
) -> tuple[float, dict[str, Any]]:
    """Submit through the API and wait for SUCCESS; seconds and result."""
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        began = time.perf_counter()
        async with session.post(
            f"{api}/api/v1/tasks/market-data", json={"symbols": names, "period": period}
        ) as response:
            task_id = (await response.json())["task_id"]
        while True:
            async with session.get(f"{api}/api/v1/tasks/status/{task_id}") as response:
                status = await response.json()
            if status["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
                break
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - began
    if status["state"] != "SUCCESS":
        raise RuntimeError(status)
    return seconds, dict(status["result"])


def naive_run(exchange: str, db_url: str, names: list[str]) -> float:
    """Blocking requests one after another; one INSERT per row."""
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(db_url))
    began = time.perf_counter()
    try:
        for name in names:
            with urllib.request.urlopen(  # noqa: S310 - loopback
                f"{exchange}/v8/finance/chart/{name}?range=1y&interval=1d", timeout=30
            ) as response:
                chart = parse_chart(response.read(), status=response.status)
            loop.run_until_complete(
                connection.execute(
                    "INSERT INTO assets (symbol) VALUES ($1) ON CONFLICT DO NOTHING", name
                )
            )
            for row in bar_rows(name, chart.bars, source="naive"):
                loop.run_until_complete(
                    connection.execute(
                        "INSERT INTO daily_prices (symbol, date, open, high, low, close, adj_close,"
                        " volume, source) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
                        " ON CONFLICT (symbol, date) DO UPDATE SET close = excluded.close",
                        *row,
                    )
                )
        return time.perf_counter() - began
    finally:
        loop.run_until_complete(connection.close())
        loop.close()


async def bare_run(exchange: str, db_url: str, names: list[str]) -> float:
    """aiohttp + gather for every fetch, then the same COPY-upsert findash uses."""
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    connector = aiohttp.TCPConnector(limit=200)
    began = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(name: str) -> list[Any]:
            async with session.get(
                f"{exchange}/v8/finance/chart/{name}", params={"range": "1y", "interval": "1d"}
            ) as response:
                chart = parse_chart(await response.read(), status=response.status)
            return bar_rows(name, chart.bars, source="bare")

        rows = [row for part in await asyncio.gather(*(one(n) for n in names)) for row in part]
        async with pool.acquire() as connection:
            await upsert_bars(connection, rows)
    seconds = time.perf_counter() - began
    await pool.close()
    return seconds


async def stored(db_url: str, names: list[str]) -> int:
    """Bars stored for `names`."""
    connection = await asyncpg.connect(db_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM daily_prices WHERE symbol = ANY($1::text[])", names
            )
        )
    finally:
        await connection.close()


def put_config(exchange: str, config: dict[str, Any]) -> None:
    """Reconfigure the simulated exchange."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{exchange}/_sim/config", data=json.dumps(config).encode(), method="PUT"
    )
    with urllib.request.urlopen(request, timeout=5):  # noqa: S310 - loopback
        pass


def sim_stats(exchange: str) -> dict[str, Any]:
    """The exchange's request counters."""
    with urllib.request.urlopen(f"{exchange}/_sim/stats", timeout=5) as response:  # noqa: S310
        return dict(json.load(response))


@dataclass(frozen=True)
class Bench:
    """The running stack, the exchange's URL and an API key."""

    stack: Stack
    exchange: str
    api: str
    key: str

    @property
    def db(self) -> str:
        """The database URL."""
        return self.stack.postgres.url


def run_main_comparison(ctx: Bench) -> dict[str, Any]:
    """findash vs bare (alternating, median of ROUNDS) vs naive at 500 symbols, then 5,000
    symbols through findash."""
    work = ctx.stack.start_worker(name="bench", concurrency=2)
    try:
        asyncio.run(findash_run(ctx.api, ctx.key, symbols("WARM", 20)))
        findash_times, bare_times = [], []
        for _ in range(ROUNDS):
            names = symbols("F", SYMBOLS)
            seconds, result = asyncio.run(findash_run(ctx.api, ctx.key, names))
            rows = asyncio.run(stored(ctx.db, names))
            assert rows == result["rows_written"], (rows, result)
            assert result["fetched"] == SYMBOLS, result
            findash_times.append(seconds)
            bare_times.append(asyncio.run(bare_run(ctx.exchange, ctx.db, symbols("B", SYMBOLS))))
        rss_500 = peak_rss_mb(work.pid)
        naive_s = naive_run(ctx.exchange, ctx.db, symbols("N", SYMBOLS))
        big = symbols("G", BIG)
        big_s, big_result = asyncio.run(findash_run(ctx.api, ctx.key, big))
        big_rows = asyncio.run(stored(ctx.db, big))
        assert big_rows == big_result["rows_written"]
        rss_5000 = peak_rss_mb(work.pid)
    finally:
        work.stop()
    findash_s, bare_s = statistics.median(findash_times), statistics.median(bare_times)
    return {
        "findash_500_s": round(findash_s, 2),
        "findash_500_runs_s": [round(t, 2) for t in findash_times],
        "bare_500_s": round(bare_s, 2),
        "bare_500_runs_s": [round(t, 2) for t in bare_times],
        "naive_500_s": round(naive_s, 2),
        "rows_500": rows,
        "speedup_vs_naive": round(naive_s / findash_s, 1),
        "bare_speedup_vs_naive": round(naive_s / bare_s, 1),
        "ratio_vs_bare": round(findash_s / bare_s, 2),
        "worker_peak_rss_mb_500": round(rss_500, 1),
        "findash_5000_s": round(big_s, 2),
        "rows_5000": big_rows,
        "worker_peak_rss_mb_5000": round(rss_5000, 1),
        "load_average": os.getloadavg()[0],
    }


def run_provider_limited(ctx: Bench) -> dict[str, Any]:
    """Two single-process workers share a job under a 10 requests/s provider limit."""
    env = {"YAHOO_RATE_LIMIT": f"{LIMITED_RATE}/second", "MARKET_DATA_CHUNK_SIZE": "25"}
    put_config(
        ctx.exchange,
        {"latency_ms": LATENCY_MS, "rate_limit_per_second": LIMITED_RATE, "rate_burst": 2},
    )
    before = sim_stats(ctx.exchange)["requests"]
    workers = [
        ctx.stack.start_worker(name=f"limited{i}", concurrency=1, extra_env=env) for i in range(2)
    ]
    try:
        seconds, result = asyncio.run(
            findash_run(ctx.api, ctx.key, symbols("L", LIMITED_SYMBOLS), period="1mo")
        )
    finally:
        for proc in workers:
            proc.stop()
        put_config(ctx.exchange, {"latency_ms": LATENCY_MS})
    after = sim_stats(ctx.exchange)["requests"]
    requests = after.get("total", 0) - before.get("total", 0)
    throttled = after.get("429", 0) - before.get("429", 0)
    ideal = LIMITED_SYMBOLS / LIMITED_RATE
    return {
        "limited_symbols": LIMITED_SYMBOLS,
        "limited_rate_per_s": LIMITED_RATE,
        "limited_s": round(seconds, 2),
        "limited_ideal_s": ideal,
        "limited_vs_ideal": round(seconds / ideal, 3),
        "limited_fetched": result["fetched"],
        "limited_requests": requests,
        "limited_429": throttled,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every case and print one JSON line of results."""
    with running_stack(
        durable=False,
        SUBMIT_RATE_LIMIT="100000/minute",
        YAHOO_RATE_LIMIT="100000/second",
        YAHOO_CONCURRENCY="64",
        DATABASE_POOL_MAX="8",
    ) as stack:
        exchange = stack.start_exchange(latency_ms=LATENCY_MS)
        api = stack.start_api()
        ctx = Bench(stack=stack, exchange=exchange, api=api, key=stack.new_api_key(is_admin=True))
        results = {**run_main_comparison(ctx), **run_provider_limited(ctx)}
    print(json.dumps(results, indent=2))  # noqa: T201 - the benchmark's report
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
