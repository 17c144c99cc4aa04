"""Task API benchmark: submit throughput and latency, and submit→SUCCESS round trips,
each next to bare Celery on the same machine in the same run.

- floor A: a script calling `send_task` in a loop (no HTTP, no auth, no registry), once
  with the stock Celery app and once with the API's own publisher app (no result
  subscription, reused Redis clients), the stricter floor;
- ours A: concurrent HTTP submits to `POST /api/v1/tasks/market-data` (auth, validation,
  rate limit, registry row, publish), closed loop, then open loop at 200 submits/s;
- floor B: `send_task(...).get()` of a one-symbol `fetch_market_data`;
- ours B: API submit of the same task, then polling its status until SUCCESS.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import aiohttp

from bench.stack import (
    Stack,
    machine_cpu,
    machine_description,
    percentile,
    process_cpu_seconds,
    running_stack,
)
from service.core.celery_config import create_celery_app, create_publisher_app

CLOSED_LOOP_SUBMITS = 1500
CLOSED_LOOP_CONCURRENCY = 32
OPEN_LOOP_RATE = 200
OPEN_LOOP_SECONDS = 8
FLOOR_SUBMITS = 1500
ROUND_TRIPS = 40


def _symbols() -> list[str]:
    return [f"B{uuid.uuid4().hex[:8].upper()}"]


def bare_publish_rate(stack: Stack, *, publisher_app: bool = False) -> tuple[float, float]:
    """Floor A: sequential send_task calls per second (stock app, or the API's), and this
    process's CPU seconds per call."""
    app = (create_publisher_app if publisher_app else create_celery_app)(stack.settings)
    try:
        app.send_task("fetch_market_data", kwargs={"symbols": _symbols()})  # warm the pool
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(FLOOR_SUBMITS):
            app.send_task("fetch_market_data", kwargs={"symbols": _symbols(), "period": "1mo"})
        cpu = (time.process_time() - cpu_started) / FLOOR_SUBMITS
        return FLOOR_SUBMITS / (time.perf_counter() - started), cpu
    finally:
        app.control.purge()
        app.close()


async def _submit(session: aiohttp.ClientSession, url: str, key: str) -> float:
    started = time.perf_counter()
    async with session.post(
        f"{url}/api/v1/tasks/market-data",
        json={"symbols": _symbols(), "period": "1mo"},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        await response.read()
        if response.status != 202:
            raise RuntimeError(f"submit answered {response.status}")
    return time.perf_counter() - started


async def api_closed_loop(url: str, key: str) -> tuple[float, list[float]]:
    """Ours A: submits/s and latencies with a fixed number of concurrent clients."""
    latencies: list[float] = []
    remaining = CLOSED_LOOP_SUBMITS
    connector = aiohttp.TCPConnector(limit=CLOSED_LOOP_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _submit(session, url, key)

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await _submit(session, url, key))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLOSED_LOOP_CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies


async def api_open_loop(url: str, key: str) -> list[float]:
    """Ours A': latencies when submits arrive at a steady OPEN_LOOP_RATE per second."""
    connector = aiohttp.TCPConnector(limit=400)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        pending = []
        for i in range(OPEN_LOOP_RATE * OPEN_LOOP_SECONDS):
            delay = started + i / OPEN_LOOP_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.ensure_future(_submit(session, url, key)))
        return list(await asyncio.gather(*pending))


def bare_round_trips(stack: Stack) -> list[float]:
    """Floor B: send_task(...).get() of a one-symbol fetch."""
    app = create_celery_app(stack.settings)
    samples = []
    try:
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            app.send_task("fetch_market_data", kwargs={"symbols": _symbols(), "period": "1mo"}).get(
                timeout=30
            )
            samples.append(time.perf_counter() - started)
    finally:
        app.close()
    return samples


async def api_round_trips(url: str, key: str) -> list[float]:
    """Ours B: submit through the API and poll status until SUCCESS."""
    samples = []
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            async with session.post(
                f"{url}/api/v1/tasks/market-data", json={"symbols": _symbols(), "period": "1mo"}
            ) as response:
                task_id = (await response.json())["task_id"]
            while True:
                async with session.get(f"{url}/api/v1/tasks/status/{task_id}") as response:
                    state = (await response.json())["state"]
                if state == "SUCCESS":
                    break
                if state in ("FAILURE", "REVOKED"):
                    raise RuntimeError(state)
                await asyncio.sleep(0.002)
            samples.append(time.perf_counter() - started)
    return samples


def _ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def _p50_p99(samples: list[float]) -> str:
    return f"{_ms(percentile(samples, 50))} / {_ms(percentile(samples, 99))}"


def run() -> dict[str, Any]:
    """Run every measurement and return the numbers."""
    with running_stack() as stack:
        floor_before, floor_cpu = bare_publish_rate(stack)
        strict_floor, strict_cpu = bare_publish_rate(stack, publisher_app=True)
        url = stack.start_api()
        key = stack.new_api_key()
        api_pid = stack.processes[-1].pid
        cpu_before = process_cpu_seconds(api_pid)
        rate, closed = asyncio.run(api_closed_loop(url, key))
        api_cpu = (process_cpu_seconds(api_pid) - cpu_before) / len(closed)
        # The machine's load drifts: the floor is the mean of one reading on each side.
        floor_after, _ = bare_publish_rate(stack)
        floor_rate = (floor_before + floor_after) / 2
        busy_before = machine_cpu()
        opened = asyncio.run(api_open_loop(url, key))
        busy = machine_cpu().since(busy_before)
        url2 = stack.start_api(workers=2)
        rate2, closed2 = asyncio.run(api_closed_loop(url2, key))
        create_celery_app(stack.settings).control.purge()
        stack.start_exchange(latency_ms=0)
        stack.start_worker(name="bench", concurrency=2)
        bare = bare_round_trips(stack)
        ours = asyncio.run(api_round_trips(url, key))
    results = {
        "bare send_task loop (submits/s; before, after)": (
            f"{floor_rate:.0f} ({floor_before:.0f}, {floor_after:.0f})"
        ),
        "bare send_task loop, API's publisher app (submits/s)": f"{strict_floor:.0f}",
        "bare send_task CPU per call (stock; publisher app)": (
            f"{_ms(floor_cpu)}; {_ms(strict_cpu)}"
        ),
        f"API submits, {CLOSED_LOOP_CONCURRENCY} clients (submits/s)": f"{rate:.0f}",
        "API submits: share of bare rate (of the stricter floor)": (
            f"{rate / floor_rate:.0%} ({rate / strict_floor:.0%})"
        ),
        "API closed loop p50 / p99": _p50_p99(closed),
        "API process CPU per submit": _ms(api_cpu),
        "API_WORKERS=2: submits/s (share of bare)": f"{rate2:.0f} ({rate2 / floor_rate:.0%})",
        "API_WORKERS=2: closed loop p50 / p99": _p50_p99(closed2),
        f"API at {OPEN_LOOP_RATE}/s p50 / p99": _p50_p99(opened),
        f"machine CPU busy during the {OPEN_LOOP_RATE}/s run (cores; steal)": (
            f"{busy.busy_cores:.2f} of {os.cpu_count()}; {busy.steal_cores:.2f}"
        ),
        "bare send_task().get() round trip p50 / p99": _p50_p99(bare),
        "API submit→SUCCESS round trip p50 / p99": _p50_p99(ours),
        "round trip ratio (p50)": f"{percentile(ours, 50) / percentile(bare, 50):.2f}×",
    }
    return {"machine": machine_description(), "results": results}
