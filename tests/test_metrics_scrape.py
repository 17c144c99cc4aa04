"""Every process's Prometheus endpoint after real work (issue 12): the counters moved by what
the work implies, labels stay bounded, and worker totals survive child recycling.

The work and the scrapes happen once, in the `metrics_scrape` session fixture
(tests/metrics_scrape.py); each test here reads one aspect of them.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path

import aiohttp
import pytest

from service.core.metrics_exposition import OTHER, TASK_NAMES
from tests.metrics_scrape import MetricsScrape, scrape, scraped_names
from tests.processes import serve_api
from tests.prom_names import CONTRACT, metric_names_used

# The first test pays for the session: Postgres, Redis, the exchange and the metrics stack.
pytestmark = pytest.mark.timeout(360)


class TestApiEndpoint:
    def test_requests_are_counted_by_route_template(self, metrics_scrape: MetricsScrape) -> None:
        """Submits count under their route template with their status; a 404 counts as the
        route "unmatched"; every request has a latency observation."""
        api, before = metrics_scrape.api, metrics_scrape.api_before
        route = "/api/v1/tasks/market-data"

        def moved(**labels: str) -> float:
            name = "findash_http_requests_total"
            return api.value(name, **labels) - before.value(name, **labels)

        assert moved(route=route, method="POST", status="202") == 2
        assert moved(route=route, method="POST", status="400") == 1
        # Two new asset-info tasks, and the Idempotency-Key replay answering 202 again.
        assert moved(route="/api/v1/tasks/asset-info", method="POST", status="202") == 3
        assert moved(route="unmatched", method="GET", status="404") == 1
        assert api.value("findash_http_request_duration_seconds_count", route=route) == 3

    def test_submits_are_counted_by_task_and_outcome(self, metrics_scrape: MetricsScrape) -> None:
        """Two accepted market-data submits, one rejected (a bad body), two accepted asset-info
        submits and one answered again from its Idempotency-Key (a duplicate)."""
        api = metrics_scrape.api
        name = "findash_task_submits_total"
        assert api.value(name, task="fetch_market_data", outcome="accepted") == 2
        assert api.value(name, task="fetch_market_data", outcome="rejected") == 1
        assert api.value(name, task="fetch_asset_info", outcome="accepted") == 2
        assert api.value(name, task="fetch_asset_info", outcome="duplicate") == 1
        assert api.value(name, outcome="broker_down") == 0

    def test_scrape_time_gauges(self, metrics_scrape: MetricsScrape) -> None:
        """Queue depth has one series per queue, the one live worker is counted, and holding
        a symbol nobody priced adds exactly one stale held symbol."""
        api = metrics_scrape.api
        queues = {s.labels["queue"] for s in api.samples if s.name == "findash_queue_depth"}
        assert queues == {"scheduled", "market_data", "analytics"}
        assert api.value("findash_workers_alive") == 1
        assert metrics_scrape.stale_after == metrics_scrape.stale_before + 1

    def test_not_in_openapi_and_needs_no_key(self, metrics_scrape: MetricsScrape) -> None:
        """/metrics answered without an API key (the scrapes above sent none)."""
        assert metrics_scrape.api.has("findash_http_requests_total")


class TestWorkerEndpoint:
    def test_tasks_are_counted_by_final_state(self, metrics_scrape: MetricsScrape) -> None:
        """Each task name's count per state equals the states the registry reported, and
        each ended task has a duration observation."""
        worker = metrics_scrape.worker_again
        for task, states in metrics_scrape.task_states.items():
            for state in ("SUCCESS", "FAILURE"):
                expected = states.count(state)
                assert worker.value("findash_tasks_total", task=task, state=state) == expected
            assert worker.value("findash_task_duration_seconds_count", task=task) == len(states)
        assert "FAILURE" in metrics_scrape.task_states["fetch_asset_info"]
        assert worker.value("findash_tasks_total", task="scheduler_probe", state="SUCCESS") >= 1

    def test_market_data_counters(self, metrics_scrape: MetricsScrape) -> None:
        """Bars written equal the bars stored for the new symbol; the unknown symbol is one
        fetch failure; every provider request waited once on the rate limiter."""
        worker = metrics_scrape.worker_again
        assert metrics_scrape.bars_stored > 0
        assert worker.value("findash_bars_written_total") == metrics_scrape.bars_stored
        assert (
            worker.value("findash_rows_written_total", table="daily_prices")
            == metrics_scrape.bars_stored
        )
        assert worker.value("findash_symbol_fetch_failures_total") == 1
        assert worker.value("findash_symbol_fetch_failures_total", reason="not_found") == 1
        requests = worker.value("findash_provider_requests_total", provider="yahoo")
        assert worker.value("findash_provider_requests_total", outcome="ok") >= 2
        assert worker.value("findash_provider_requests_total", outcome="not_found") >= 1
        assert worker.value("findash_rate_limiter_wait_seconds_count") == requests
        breakers = [s for s in worker.samples if s.name == "findash_circuit_breaker_open"]
        assert [(s.labels["provider"], s.value) for s in breakers] == [("yahoo", 0)], (
            metrics_scrape.extra
        )

    def test_totals_survive_child_recycling(self, metrics_scrape: MetricsScrape) -> None:
        """With one task per child, many children wrote metrics, and no counter of the later
        scrape is below the earlier one."""
        assert metrics_scrape.child_pids_seen >= 4
        earlier, later = metrics_scrape.worker, metrics_scrape.worker_again
        for sample in earlier.samples:
            if sample.name.endswith(("_total", "_count", "_sum", "_bucket")):
                assert later.value(sample.name, **sample.labels) >= sample.value, sample


class TestSchedulerEndpoint:
    def test_leader_fires_and_lag(self, metrics_scrape: MetricsScrape) -> None:
        """The only replica leads; its sent fires are at most the ledger's sent rows (read
        after the scrape), each with a lag observation, and the catch-up lag is exposed."""
        scheduler = metrics_scrape.scheduler
        assert scheduler.value("findash_scheduler_leader") == 1
        sent = scheduler.value("findash_scheduler_fires_total", outcome="sent")
        assert 2 <= sent <= metrics_scrape.ledger_sent
        assert scheduler.value("findash_scheduler_fire_lag_seconds_count") == sent
        assert scheduler.has("findash_scheduler_catchup_lag_seconds")
        jobs = {s.labels["job"] for s in scheduler.samples if "job" in s.labels}
        assert jobs <= {"probe-every-2s", "probe-shadow-every-4s"}


class TestLabels:
    def test_no_label_carries_user_input(self, metrics_scrape: MetricsScrape) -> None:
        """No label value anywhere is a submitted symbol, a user id, an API key or a task
        id, and every task label is a known task name."""
        for endpoint in metrics_scrape.endpoints():
            for sample in (s for s in endpoint.samples if s.name.startswith("findash_")):
                values = set(sample.labels.values())
                assert not values & metrics_scrape.private, sample
                assert not any(metrics_scrape.good_symbol in v for v in values), sample
                if "task" in sample.labels:
                    assert sample.labels["task"] in TASK_NAMES | {OTHER}, sample

    def test_every_contract_name_was_scraped(self, metrics_scrape: MetricsScrape) -> None:
        """Every metric name of the contract shared with the alerts and the dashboard
        appeared in a scrape."""
        assert scraped_names(metrics_scrape) >= CONTRACT


async def test_metrics_answer_while_redis_is_down(
    base_env: dict[str, str], postgres: object, scratch_dir: Path
) -> None:
    """With Redis unreachable /metrics still answers 200, leaving out only the families it
    could not read (queue depth, live workers)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    env = {**base_env, "REDIS_URL": f"redis://127.0.0.1:{dead}/0"}
    log = scratch_dir / f"api-no-redis-{uuid.uuid4().hex[:6]}.log"
    with serve_api(env, log_path=log) as (url, _):
        async with aiohttp.ClientSession() as http:
            endpoint = await scrape(http, f"{url}/metrics")
            endpoint = await scrape(http, f"{url}/metrics")
    assert "findash_queue_depth" not in endpoint.families
    assert "findash_workers_alive" not in endpoint.families
    assert endpoint.has("findash_stale_held_symbols")
    assert endpoint.value("findash_http_requests_total", route="/metrics") >= 1
    assert log.read_text().count("metrics family skipped") == 2


@pytest.mark.parametrize("path", ["/schema/openapi.json"])
async def test_metrics_route_is_not_in_the_schema(api_url: str, path: str) -> None:
    """The OpenAPI document does not list /metrics."""
    async with aiohttp.ClientSession() as http, http.get(f"{api_url}{path}") as response:
        document = await response.json()
    assert "/metrics" not in document["paths"]


class TestDashboardAndAlertsUseScrapedMetrics:
    """Issue 12: the dashboard and the alert rules reference only metrics a scrape returned."""

    def test_every_queried_metric_was_scraped(self, metrics_scrape: MetricsScrape) -> None:
        """Every series the alert rules and the Grafana dashboard query (Prometheus's own
        `up` aside) is one the API, worker or scheduler endpoint actually returned after the
        session's work."""
        root = Path(__file__).resolve().parent.parent
        used = metric_names_used(
            root / "ops" / "prometheus" / "alerts.yml",
            root / "ops" / "grafana" / "dashboards" / "findash.json",
        )
        assert used, "no metric names found in the rules and the dashboard"
        assert used - scraped_names(metrics_scrape) == {"up"}


async def test_api_workers_share_their_counts(
    base_env: dict[str, str], postgres: object, scratch_dir: Path
) -> None:
    """With API_WORKERS=2 every scrape, whichever process answers it, counts every process's
    requests: 60 requests, each on a connection of its own made while both processes wait
    (so both take some), show as exactly 60 on each of ten scrapes."""
    env = {
        **base_env,
        "API_WORKERS": "2",
        "WORKER_METRICS_DIR": str(scratch_dir / f"metrics-{uuid.uuid4().hex[:6]}"),
    }
    log = scratch_dir / f"api-two-workers-{uuid.uuid4().hex[:6]}.log"
    requests = 60
    with serve_api(env, log_path=log) as (url, _):
        for _ in range(requests):
            async with aiohttp.ClientSession() as own, own.get(f"{url}/no-such-page") as response:
                assert response.status == 404
            await asyncio.sleep(0.02)  # both processes back in accept()
        counts = []
        for _ in range(10):
            async with aiohttp.ClientSession() as fresh:
                endpoint = await scrape(fresh, f"{url}/metrics")
            counts.append(
                endpoint.value(
                    "findash_http_requests_total", route="unmatched", method="GET", status="404"
                )
            )
    assert counts == [requests] * 10
    assert log.read_text().count("api started") == 2
