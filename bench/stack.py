"""A throwaway findash stack for benchmarks: embedded Postgres and Redis, migrations,
and on request the simulated exchange, workers and the API, on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from service.core.migrations import migrate
from service.core.settings import Settings
from service.core.users import create_user
from service.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from tests.processes import ManagedProcess, wait_until_http_ok

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    """Handles on the running pieces; `env` is what every process of the stack gets."""

    directory: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    env: dict[str, str]
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        """Settings for in-process clients of this stack."""
        return Settings.from_env(self.env)

    def start_exchange(self, *, latency_ms: int) -> str:
        """Start the simulated exchange; returns its URL (also set as YAHOO_BASE_URL)."""
        port = int(self.env["SIM_EXCHANGE_PORT"])
        process = ManagedProcess(
            [
                sys.executable,
                "-m",
                "workers.market_data.simulated_exchange",
                "--port",
                str(port),
                "--latency-ms",
                str(latency_ms),
            ],
            env=self.env,
            log_path=self.directory / "exchange.log",
        )
        process.start()
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until_http_ok(f"{url}/health", process)
        return url

    def start_worker(
        self, *, name: str, concurrency: int = 2, extra_env: dict[str, str] | None = None
    ) -> ManagedProcess:
        """Start a prefork worker on every queue (the stack's env plus `extra_env`) and wait
        for its ping."""
        from tests.conftest import start_worker

        process = start_worker(
            {**self.env, **(extra_env or {})},
            log_path=self.directory / f"{name}.log",
            name=name,
            concurrency=concurrency,
        )
        self.processes.append(process)
        return process

    def start_api(self, *, workers: int = 1) -> str:
        """Start the API with `workers` processes; returns its URL."""
        port = free_port()
        process = ManagedProcess(
            [sys.executable, "-m", "service.api"],
            env={**self.env, "API_PORT": str(port), "API_WORKERS": str(workers)},
            log_path=self.directory / f"api-{port}.log",
        )
        process.start()
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_until_http_ok(f"{url}/health", process)
        return url

    def new_api_key(self, *, is_admin: bool = False) -> str:
        """Create a user with a fresh email; returns its API key."""

        async def create() -> str:
            connection = await asyncpg.connect(self.postgres.url)
            try:
                email = f"bench-{uuid.uuid4().hex[:6]}@x"
                return (await create_user(connection, email=email, is_admin=is_admin)).api_key
            finally:
                await connection.close()

        return asyncio.run(create())


@contextmanager
def running_stack(*, durable: bool = True, **extra_env: str) -> Iterator[Stack]:
    """Start Postgres (fsync off unless `durable`) and Redis, apply migrations, yield; stop
    everything afterwards. `extra_env` adds to or overrides the stack's env."""
    directory = Path(tempfile.mkdtemp(prefix="findash-bench-"))
    postgres = EmbeddedPostgres(directory / "postgres", durable=durable)
    redis = EmbeddedRedis(directory / "redis")
    postgres.start()
    redis.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDASH_", "CELERY_"))}
    exchange_port = free_port()
    env.update(
        DATABASE_URL=postgres.url,
        REDIS_URL=redis.url,
        LOG_FORMAT="json",
        LOG_LEVEL="WARNING",
        YAHOO_BASE_URL=f"http://127.0.0.1:{exchange_port}",
        SIM_EXCHANGE_PORT=str(exchange_port),
        SUBMIT_RATE_LIMIT="1000000/minute",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra_env)
    asyncio.run(migrate(postgres.url))
    stack = Stack(directory=directory, postgres=postgres, redis=redis, env=env)
    try:
        yield stack
    finally:
        for process in reversed(stack.processes):
            process.stop()
        postgres.stop()
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)


def machine_description() -> str:
    """One line naming this machine for the results table."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {sys.version.split()[0]}"


@dataclass(frozen=True)
class CpuTimes:
    """Machine-wide CPU seconds (all cores) from /proc/stat, and the wall clock."""

    busy: float
    steal: float
    wall: float

    def since(self, earlier: CpuTimes) -> CpuUse:
        """Average cores in use between `earlier` and this reading."""
        wall = self.wall - earlier.wall
        return CpuUse(
            busy_cores=(self.busy - earlier.busy) / wall,
            steal_cores=(self.steal - earlier.steal) / wall,
        )


@dataclass(frozen=True)
class CpuUse:
    """Cores busy (user, system, interrupts; any process) and cores stolen by the host."""

    busy_cores: float
    steal_cores: float


def machine_cpu() -> CpuTimes:
    """Read /proc/stat now (zeros where it does not exist)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stat = Path("/proc/stat")
    fields = [0] * 8
    if stat.exists():
        fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return CpuTimes(
        busy=(user + nice + system + irq + softirq) / ticks,
        steal=steal / ticks,
        wall=time.monotonic(),
    )


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process `pid` (all its threads); 0 if unknown."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return 0.0
    # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]
