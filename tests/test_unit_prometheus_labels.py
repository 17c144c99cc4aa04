"""Pure pieces of the Prometheus metrics: bounded label values and distinct dev ports."""

from __future__ import annotations

import pytest

from service.core.metrics_exposition import OTHER, task_label
from service.core.settings import Settings
from service.dev.supervisor import metrics_env
from workers.metrics import PROVIDER_OUTCOMES, provider_outcome


class TestLabels:
    @pytest.mark.parametrize(
        ("status", "outcome"),
        [
            (200, "ok"),
            (204, "ok"),
            (404, "not_found"),
            (429, "rate_limited"),
            (500, "server_error"),
            (503, "server_error"),
            (401, "error"),
            (400, "error"),
            (302, "error"),
        ],
    )
    def test_provider_outcome(self, status: int, outcome: str) -> None:
        """A provider's HTTP status maps to one outcome of the fixed set."""
        assert provider_outcome(status) == outcome
        assert outcome in PROVIDER_OUTCOMES

    @pytest.mark.parametrize(
        ("name", "label"),
        [
            ("fetch_market_data", "fetch_market_data"),
            ("scheduler_probe", "scheduler_probe"),
            ("no_such_task", OTHER),
            ("", OTHER),
            (None, OTHER),
        ],
    )
    def test_task_label(self, name: str | None, label: str) -> None:
        """Only a contract's task name becomes a label; anything else is "other"."""
        assert task_label(name) == label


class TestDevPorts:
    @pytest.mark.parametrize(
        ("worker", "scheduler"), [("0", "0"), ("9500", "9501"), ("9500", "9500"), ("7000", "0")]
    )
    def test_every_process_gets_its_own_port(self, worker: str, scheduler: str) -> None:
        """`just dev` gives the two workers and the scheduler three distinct ports."""
        settings = Settings.from_env(
            {"WORKER_METRICS_PORT": worker, "SCHEDULER_METRICS_PORT": scheduler}
        )
        ports = [port for env in metrics_env(settings).values() for port in env.values()]
        assert len(set(ports)) == 3
        assert all(int(port) > 0 for port in ports)
