"""Which Prometheus series the alert rules and the Grafana dashboard query, by name.

The names are those written in the queries: `findash_tasks_total`,
`findash_task_duration_seconds_bucket`, `up`. A scrape parsed with prometheus-client
yields the same names as its samples' names, so the two sets compare directly.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.:$])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "atan2",
        "inf",
        "nan",
    }
)


# The metric contract of issue 12, as exposed (histograms by their bucket series).
CONTRACT = frozenset(
    {
        "findash_http_requests_total",
        "findash_http_request_duration_seconds_bucket",
        "findash_task_submits_total",
        "findash_queue_depth",
        "findash_workers_alive",
        "findash_stale_held_symbols",
        "findash_tasks_total",
        "findash_task_duration_seconds_bucket",
        "findash_provider_requests_total",
        "findash_rate_limiter_wait_seconds_bucket",
        "findash_circuit_breaker_open",
        "findash_bars_written_total",
        "findash_rows_written_total",
        "findash_symbol_fetch_failures_total",
        "findash_scheduler_leader",
        "findash_scheduler_fires_total",
        "findash_scheduler_catchup_lag_seconds",
        "findash_scheduler_fire_lag_seconds_bucket",
    }
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names one PromQL expression selects (functions, labels, keywords removed)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(0)
        if name.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(name)
    return names


def rule_expressions(rules_path: Path) -> list[str]:
    """Every `expr` of a Prometheus rules file, in file order."""
    document = YAML(typ="safe").load(rules_path.read_text(encoding="utf-8"))
    return [str(rule["expr"]) for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions(dashboard_path: Path) -> list[str]:
    """Every Prometheus query of a Grafana dashboard's panels (rows' nested panels included)."""
    dashboard = json.loads(dashboard_path.read_text(encoding="utf-8"))
    return [
        str(target["expr"])
        for panel in _panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in panels:
        found.append(panel)
        found.extend(_panels(panel.get("panels", [])))
    return found


def metric_names_used(rules_path: Path, dashboard_path: Path) -> set[str]:
    """Every metric name the alert rules and the dashboard query."""
    expressions = [*rule_expressions(rules_path), *dashboard_expressions(dashboard_path)]
    return {name for expr in expressions for name in promql_metric_names(expr)}
