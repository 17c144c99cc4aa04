"""The API's Prometheus metrics and `GET /metrics` (docs/PROMETHEUS.md).

Per request: one counter increment and one histogram observation, keyed by the route
*template* Litestar matched ("unmatched" for a 404), never the raw path. Per scrape: queue
depths, live workers and stale held symbols are read then (one LLEN per queue, one ZCOUNT,
one SQL query), each under a deadline; a family whose source is down is left out of that
scrape and logged once, and the endpoint still answers 200.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from litestar import Request, Response, get
from litestar.datastructures import State
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from service.core.contracts import ALL_QUEUES
from service.core.logs import get_logger
from service.core.metrics_exposition import multiprocess_registry, task_label
from service.core.redis_keys import WORKER_HEARTBEAT_TTL_SECONDS, WORKERS_ALIVE
from service.core.trading_calendar import NYSE
from service.portfolio.pricing import stale_before

log = get_logger(__name__)
UNMATCHED = "unmatched"
SCRAPE_READ_SECONDS = 2.0
SUBMIT_OUTCOMES = ("accepted", "duplicate", "rejected", "broker_down")

HTTP_REQUESTS = Counter(
    "findash_http_requests",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "findash_http_request_duration_seconds",
    "Time from a request's arrival to its response's end, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASK_SUBMITS = Counter(
    "findash_task_submits",
    "Task submits by task name and outcome (accepted, duplicate, rejected, broker_down).",
    ["task", "outcome"],
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def count_submit(task: str, outcome: str) -> None:
    """One submit of `task` ended with `outcome`."""
    TASK_SUBMITS.labels(task=task_label(task), outcome=outcome).inc()


class RequestMetrics:
    """Counts and times HTTP requests (one counter increment and one histogram observation
    each), keyed by the route *template* Litestar matched ("unmatched" for a 404).

    `submit_routes` maps a submit route's template to its task: a 4xx there is a rejected
    submit (the body failed validation, the limit was hit, or the key was refused).
    """

    def __init__(self, *, submit_routes: dict[str, str]) -> None:
        self._submit_routes = submit_routes
        # `.labels()` takes a lock and builds a key per call; the children it returns never
        # change, so each (route, method, status) looks them up once. Bounded: routes are
        # templates, methods a fixed set, statuses the ones the API sends.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram, str | None]] = {}

    def observe(self, *, route: str | None, method: str, status: int, seconds: float) -> None:
        """One request to `route` (None: no route matched) answered `status`."""
        key = (route or UNMATCHED, method if method in _METHODS else "other", status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._bind(*key)
        count, duration, rejected_task = children
        count.inc()
        duration.observe(seconds)
        if rejected_task is not None:
            count_submit(rejected_task, "rejected")

    def _bind(self, route: str, method: str, status: int) -> tuple[Counter, Histogram, str | None]:
        task = self._submit_routes.get(route)
        return (
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)),
            HTTP_DURATION.labels(route=route, method=method),
            task if task is not None and 400 <= status < 500 else None,
        )


STALE_HELD_SYMBOLS_SQL = """
WITH positions AS (
    SELECT upper(t.symbol) AS symbol
    FROM transactions t
    LEFT JOIN LATERAL (
        SELECT exp(sum(ln(s.numerator / s.denominator))) AS factor
        FROM splits s WHERE s.symbol = t.symbol AND s.date > t.date
    ) AS later ON true
    WHERE t.type IN ('BUY', 'SELL') AND t.symbol IS NOT NULL
    GROUP BY t.portfolio_id, t.symbol
    HAVING sum(
        CASE t.type WHEN 'BUY' THEN t.quantity ELSE -t.quantity END * coalesce(later.factor, 1)
    ) > 1e-9
),
held AS (SELECT symbol FROM positions UNION SELECT upper($3::text))
SELECT count(*) FROM held h
WHERE NOT EXISTS (SELECT 1 FROM daily_prices d WHERE d.symbol = h.symbol AND d.date >= $1)
  AND NOT EXISTS (
      SELECT 1 FROM latest_quotes q WHERE q.symbol = h.symbol AND q.market_time >= $2)
"""


class _Families(Collector):
    """The families read at this scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


class ScrapeReads:
    """Reads the scrape-time gauges; remembers which sources are down to log each once."""

    def __init__(self, *, queues: tuple[str, ...] = ALL_QUEUES) -> None:
        self._queues = queues
        self._failing: set[str] = set()

    async def families(
        self, *, broker: aioredis.Redis, redis: aioredis.Redis, pool: asyncpg.Pool, state: State
    ) -> list[Metric]:
        """Every family whose source answered within the deadline."""
        reads: dict[str, Callable[[], Awaitable[Metric]]] = {
            "queue_depth": lambda: self._queue_depth(broker),
            "workers_alive": lambda: self._workers_alive(redis),
            "stale_held_symbols": lambda: self._stale_held(pool, state),
        }
        results = await asyncio.gather(
            *(asyncio.wait_for(read(), SCRAPE_READ_SECONDS) for read in reads.values()),
            return_exceptions=True,
        )
        families: list[Metric] = []
        for name, result in zip(reads, results, strict=True):
            if isinstance(result, BaseException):
                if name not in self._failing:
                    self._failing.add(name)
                    log.warning("metrics family skipped", family=name, error=repr(result))
                continue
            if name in self._failing:
                self._failing.discard(name)
                log.info("metrics family back", family=name)
            families.append(result)
        return families

    async def _queue_depth(self, broker: aioredis.Redis) -> Metric:
        async with broker.pipeline(transaction=False) as pipe:
            for queue in self._queues:
                pipe.llen(queue)
            depths = await pipe.execute()
        family = GaugeMetricFamily(
            "findash_queue_depth", "Messages waiting in each broker queue.", labels=["queue"]
        )
        for queue, depth in zip(self._queues, depths, strict=True):
            family.add_metric([queue], float(depth))
        return family

    async def _workers_alive(self, redis: aioredis.Redis) -> Metric:
        since = time.time() - WORKER_HEARTBEAT_TTL_SECONDS
        alive = await redis.zcount(WORKERS_ALIVE, since, "+inf")
        return GaugeMetricFamily(
            "findash_workers_alive",
            f"Workers with a heartbeat in the last {WORKER_HEARTBEAT_TTL_SECONDS} s.",
            value=float(alive),
        )

    async def _stale_held(self, pool: asyncpg.Pool, state: State) -> Metric:
        now = state.clock()
        session = NYSE.last_completed_session(now)
        count = await pool.fetchval(
            STALE_HELD_SYMBOLS_SQL,
            session,
            stale_before(now, NYSE),
            state.settings.benchmark_symbol,
        )
        return GaugeMetricFamily(
            "findash_stale_held_symbols",
            "Held symbols (and the benchmark) with no price since the last completed close.",
            value=float(count),
        )


@get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request[Any, Any, State]) -> Response[bytes]:
    """Prometheus text exposition of this API process (no API key: keep it off the
    public network)."""
    state = request.app.state
    families = await state.scrape_reads.families(
        broker=state.broker_redis, redis=state.redis, pool=state.pool, state=state
    )
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(_Families(families))
    # Under API_WORKERS > 1 every uvicorn process writes its counts to files; a scrape, which
    # reaches one process, sums them all.
    recorded = multiprocess_registry() or REGISTRY
    body = generate_latest(recorded) + generate_latest(scraped)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
