"""Task API benchmark: submit throughput and latency, and submit→SUCCESS round trips,
each next to bare Celery on the same machine in the same run.

- floor A: a script calling `send_task` in a loop (no HTTP, no auth, no registry), once
  with the stock Celery app and once with the API's own publisher app (no result
  subscription, reused Redis clients), the stricter floor;
- ours A: concurrent HTTP submits to `POST /api/v1/tasks/market-data` (auth, validation,
  rate limit, registry row, publish), closed loop, then open loop at 200 submits/s;
- floor B: `send_task(...).get()` of a one-symbol `fetch_market_data`;
- ours B: API submit of the same task, then polling its status until SUCCESS.

Every submit names a symbol no earlier submit of the run used. The API answers 200
"existing" instead of 202 when the same key submits a task identical to an unfinished
one, and no worker runs during the submit phases, so every task they submit stays
PENDING for the rest of the run: one repeated symbol would be a duplicate.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
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


# A counter, not a random suffix: a random 8-hex-digit suffix (2^32 values) repeats among
# the run's ~4,600 API submits about once in 400 runs (birthday bound; once in 1,200 within
# the open loop), and a repeat is answered 200. The run's API key is new and its database
# empty, so only a repeat within the run can collide. Nine characters, as before.
_SYMBOL_NUMBERS = itertools.count(1)


def _symbols() -> list[str]:
    """One symbol never used before in this process: B00000001, B00000002, ..."""
    return [f"B{next(_SYMBOL_NUMBERS):08d}"]


async def _check_submitted(response: aiohttp.ClientResponse, *, phase: str, body: Any) -> str:
    """The new task's id; raises, saying what happened, unless the API answered 202."""
    if response.status == 202:
        task_id: str = (await response.json())["task_id"]
        return task_id
    text = await response.text()
    if response.status == 200:
        raise RuntimeError(
            f"{phase}: submit answered 200 instead of 202 for {body}: the API found an "
            f"unfinished identical task from this API key and returned its id ({text}); "
            "the benchmark submitted the same parameters twice, so this sample measured "
            "duplicate detection, not a submit"
        )
    raise RuntimeError(f"{phase}: submit answered {response.status} for {body}: {text}")


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


async def _submit(session: aiohttp.ClientSession, url: str, key: str, *, phase: str) -> float:
    body = {"symbols": _symbols(), "period": "1mo"}
    started = time.perf_counter()
    async with session.post(
        f"{url}/api/v1/tasks/market-data",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        await response.read()
        if response.status != 202:
            await _check_submitted(response, phase=phase, body=body)
    return time.perf_counter() - started


async def api_closed_loop(url: str, key: str) -> tuple[float, list[float]]:
    """Ours A: submits/s and latencies with a fixed number of concurrent clients."""
    latencies: list[float] = []
    remaining = CLOSED_LOOP_SUBMITS
    connector = aiohttp.TCPConnector(limit=CLOSED_LOOP_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _submit(session, url, key, phase="closed loop warm-up")

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                latencies.append(await _submit(session, url, key, phase="closed loop"))

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
            pending.append(asyncio.ensure_future(_submit(session, url, key, phase="open loop")))
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
            body = {"symbols": _symbols(), "period": "1mo"}
            started = time.perf_counter()
            async with session.post(f"{url}/api/v1/tasks/market-data", json=body) as response:
                # A 200 here would name a purged PENDING task: polling it would never end.
                task_id = await _check_submitted(response, phase="round trip", body=body)
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
