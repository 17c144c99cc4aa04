"""The Celery configuration every process shares: JSON only, at-least-once, bounded waits."""

from __future__ import annotations

from typing import Any

import pytest

from service.core.celery_config import celery_config, create_publisher_app
from service.core.contracts import CONTRACTS, TaskContract
from service.core.settings import Settings

SETTINGS = Settings.from_env(
    {
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "CELERY_VISIBILITY_TIMEOUT": "900",
        "CELERY_TASK_TIME_LIMIT": "600",
    }
)


class TestCeleryConfig:
    @pytest.mark.parametrize(
        ("key", "expected"),
        [
            ("task_serializer", "json"),
            ("result_serializer", "json"),
            ("event_serializer", "json"),
            ("accept_content", ["json"]),
            ("result_accept_content", ["json"]),
            ("task_acks_late", True),
            ("task_retry_on_worker_lost", True),
            ("worker_prefetch_multiplier", 1),
            ("worker_send_task_events", True),
            ("task_publish_retry", True),
            ("enable_utc", True),
        ],
    )
    def test_contract(self, key: str, expected: Any) -> None:
        """Workers accept JSON only and deliver at least once, one message per child."""
        assert celery_config(SETTINGS)[key] == expected

    def test_visibility_timeout_outlasts_the_time_limit(self) -> None:
        """The broker redelivers only after the longest task could have finished."""
        config = celery_config(SETTINGS)
        visibility = config["broker_transport_options"]["visibility_timeout"]
        assert visibility == 900
        assert visibility > config["task_time_limit"] > config["task_soft_time_limit"]

    def test_publish_retries_are_bounded(self) -> None:
        """A publish gives up after a few quick retries instead of blocking for long."""
        policy = celery_config(SETTINGS)["task_publish_retry_policy"]
        assert policy["max_retries"] <= 3
        assert policy["interval_max"] <= 1

    @pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
    def test_every_task_is_routed_to_its_contract_queue(self, contract: type[TaskContract]) -> None:
        """Celery's route for each task is the queue its contract names."""
        assert celery_config(SETTINGS)["task_routes"][contract.name] == {"queue": contract.queue}

    def test_seed_task_names_have_queues(self) -> None:
        """The seed's six task names are routed: I/O-bound to market_data, CPU to analytics."""
        routes = celery_config(SETTINGS)["task_routes"]
        assert {name: routes[name]["queue"] for name in SEED_TASKS} == SEED_TASKS

    def test_publisher_reads_no_results(self) -> None:
        """Publishers (API, scheduler) keep the JSON contract but have no result backend."""
        app = create_publisher_app(SETTINGS)
        try:
            assert app.conf.result_backend == "disabled"
            assert app.conf.accept_content == ["json"]
        finally:
            app.close()

    def test_publisher_ignores_a_result_backend_in_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A CELERY_RESULT_BACKEND environment variable (Celery's conf prefers it to the
        setting) still leaves publishers with the disabled backend, so a submit never waits
        on a result subscription."""
        monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://127.0.0.1:1/0")
        app = create_publisher_app(SETTINGS)
        try:
            assert type(app.backend).__name__ == "DisabledBackend"
        finally:
            app.close()


SEED_TASKS = {
    "fetch_market_data": "market_data",
    "update_portfolio_prices": "market_data",
    "fetch_asset_info": "market_data",
    "calculate_portfolio_performance": "analytics",
    "create_portfolio_snapshot": "analytics",
    "generate_portfolio_report": "analytics",
}
