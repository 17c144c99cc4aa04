"""The metric-name extraction used to cross-check the dashboard and alerts against a scrape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.prom_names import metric_names_used, promql_metric_names


class TestPromqlMetricNames:
    """Metric names out of one PromQL expression."""

    @pytest.mark.parametrize(
        ("expr", "expected"),
        [
            ("up", {"up"}),
            ('up{job="api"} == 0', {"up"}),
            (
                'sum by (task) (rate(findash_tasks_total{state="FAILURE"}[30m]))'
                ' / sum by (task) (rate(findash_tasks_total{state=~"SUCCESS|FAILURE"}[30m]))',
                {"findash_tasks_total"},
            ),
            (
                "histogram_quantile(0.95, sum by (le, route) "
                "(rate(findash_http_request_duration_seconds_bucket[$__rate_interval])))",
                {"findash_http_request_duration_seconds_bucket"},
            ),
            (
                'a_total{outcome="missed"} > 0 unless a_total{outcome="missed"} offset 15m',
                {"a_total"},
            ),
            ("sum(x) < 1 or absent(y)", {"x", "y"}),
            ("max(x) by (queue) and on (queue) deriv(y[10m:1m]) > 1e3", {"x", "y"}),
            ('z{route="/api/v1/tasks/{task_id:str}", method="GET"}', {"z"}),
            ("count(up == 0) or vector(0)", {"up"}),
            ("sum without (instance) (rate(b[5m])) * 2 > bool 1", {"b"}),
            ("topk(10, c) / ignoring(le) group_left d", {"c", "d"}),
        ],
    )
    def test_names_exclude_functions_labels_keywords_and_durations(
        self, expr: str, expected: set[str]
    ) -> None:
        """Only selected series names come back: no function, label, keyword or number."""
        assert promql_metric_names(expr) == expected


class TestMetricNamesUsed:
    """Names across a rules file and a dashboard."""

    def test_rules_and_nested_dashboard_panels_are_both_read(self, tmp_path: Path) -> None:
        """Rule expressions and every panel target, rows' collapsed panels included, count."""
        rules = tmp_path / "rules.yml"
        rules.write_text(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rule_metric > 1\n"
            "      - record: r:x\n        expr: sum(recorded_metric)\n"
        )
        dashboard = tmp_path / "d.json"
        dashboard.write_text(
            json.dumps(
                {
                    "panels": [
                        {"type": "timeseries", "targets": [{"expr": "top_metric"}]},
                        {
                            "type": "row",
                            "panels": [{"targets": [{"expr": "rate(nested_metric[5m])"}]}],
                        },
                        {"type": "text"},
                    ]
                }
            )
        )
        assert metric_names_used(rules, dashboard) == {
            "rule_metric",
            "recorded_metric",
            "top_metric",
            "nested_metric",
        }
