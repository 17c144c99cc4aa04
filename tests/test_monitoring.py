"""The monitoring profile without Docker: promtool on the config and rules, the Grafana
provisioning, and the alerts' names, runbook links and metric contract."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.prom_names import (
    CONTRACT,
    dashboard_expressions,
    metric_names_used,
    promql_metric_names,
)
from tests.test_compose import SERVICES

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "alerts_test.yml"
GRAFANA_DIR = ROOT / "ops" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "findash.json"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not on PATH (Debian: apt-get install prometheus; .ci/run unpacks it)",
)

# Issue 12 item 3, one alert each.
REQUIRED_ALERTS = {
    "no scheduler leader for 1 minute": "FindashNoSchedulerLeader",
    "a scheduled fire not sent within its grace": "FindashScheduledFireMissed",
    "a queue growing for 10 minutes": "FindashQueueGrowing",
    "the task failure ratio": "FindashTaskFailureRatioHigh",
    "a provider circuit open": "FindashProviderCircuitOpen",
    "prices stale for held symbols after the close": "FindashStalePricesAfterClose",
    "no worker heartbeat": "FindashNoWorkerHeartbeat",
}
# "Anything in the window" rules fire on the first sample; every other rule waits.
FIRE_AT_ONCE = {"FindashScheduledFireMissed", "FindashBrokerDown", "FindashScheduledQueueBacklog"}


def load_yaml(path: Path) -> Any:
    """A YAML file's document."""
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule in ops/prometheus/alerts.yml."""
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool and capture its output."""
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


class TestPromtool:
    """promtool accepts the config, the rules, the rules' unit tests and the dashboard's queries."""

    @needs_promtool
    def test_config_and_its_rule_files_are_valid(self) -> None:
        """`promtool check config` passes, which also loads alerts.yml."""
        result = promtool("check", "config", CONFIG)
        assert result.returncode == 0, result.stdout + result.stderr

    @needs_promtool
    def test_rules_are_valid(self) -> None:
        """`promtool check rules` passes on alerts.yml."""
        result = promtool("check", "rules", RULES)
        assert result.returncode == 0, result.stdout + result.stderr

    @needs_promtool
    def test_rule_unit_tests_pass(self) -> None:
        """Every alert fires on its failure and stays quiet on a healthy neighbour."""
        result = promtool("test", "rules", RULE_TESTS)
        assert result.returncode == 0, result.stdout + result.stderr

    @needs_promtool
    def test_rule_unit_tests_catch_a_broken_rule(self, tmp_path: Path) -> None:
        """With the leader alert's threshold inverted, `promtool test rules` fails on it."""
        broken = RULES.read_text().replace(
            "sum(findash_scheduler_leader) < 1", "sum(findash_scheduler_leader) > 1"
        )
        (tmp_path / "alerts.yml").write_text(broken)
        shutil.copy(RULE_TESTS, tmp_path / "alerts_test.yml")
        result = promtool("test", "rules", tmp_path / "alerts_test.yml")
        assert result.returncode != 0
        assert "FindashNoSchedulerLeader" in result.stdout + result.stderr

    @needs_promtool
    def test_dashboard_queries_parse(self, tmp_path: Path) -> None:
        """Every dashboard query is valid PromQL (Grafana's interval variables as 5m)."""
        expressions = [
            re.sub(r"\$__(rate_)?interval|\$__range", "5m", expr)
            for expr in dashboard_expressions(DASHBOARD)
        ]
        rules = {
            "groups": [
                {
                    "name": "dashboard",
                    "rules": [
                        {"record": f"dashboard:query_{index}", "expr": expr}
                        for index, expr in enumerate(expressions)
                    ],
                }
            ]
        }
        path = tmp_path / "dashboard_rules.yml"
        path.write_text(json.dumps(rules))
        result = promtool("check", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr


class TestScrapeConfig:
    """prometheus.yml reaches every findash process compose runs, on the ports they listen on."""

    def test_every_findash_process_is_scraped_on_its_port(self) -> None:
        """api on 8000, each worker service on WORKER_METRICS_PORT, scheduler replicas on
        SCHEDULER_METRICS_PORT."""
        jobs = {job["job_name"]: job for job in load_yaml(CONFIG)["scrape_configs"]}
        env = SERVICES["api"]["environment"]
        expected = {
            "api": ({"api"}, 8000),
            "worker": (
                {name for name in SERVICES if name.startswith("worker")},
                int(env["WORKER_METRICS_PORT"]),
            ),
            "scheduler": ({"scheduler"}, int(env["SCHEDULER_METRICS_PORT"])),
        }
        for job_name, (services, port) in expected.items():
            discovery = jobs[job_name]["dns_sd_configs"]
            assert {name for sd in discovery for name in sd["names"]} == services, job_name
            assert {sd["port"] for sd in discovery} == {port}, job_name

    def test_rule_files_are_mounted_with_the_config(self) -> None:
        """The rule files the config names sit beside it in the directory compose mounts."""
        for rule_file in load_yaml(CONFIG)["rule_files"]:
            assert (PROMETHEUS_DIR / rule_file).is_file()
        assert "./ops/prometheus:/etc/prometheus:ro" in SERVICES["prometheus"]["volumes"]


class TestGrafana:
    """Provisioning files and the dashboard agree with each other and with compose."""

    def test_dashboard_uses_only_the_provisioned_datasource(self) -> None:
        """Every panel and query names the datasource uid provisioning creates, never an
        unresolved `${DS_...}` input."""
        datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
        uid = datasources["datasources"][0]["uid"]
        dashboard = json.loads(DASHBOARD.read_text())
        assert "${DS_" not in DASHBOARD.read_text()
        assert "__inputs" not in dashboard
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid, panel["title"]

    def test_dashboard_has_a_stable_uid_and_unique_panel_ids(self) -> None:
        """The dashboard keeps its URL (fixed uid) and its panels are addressable."""
        dashboard = json.loads(DASHBOARD.read_text())
        assert dashboard["uid"] == "findash"
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids))

    def test_provider_reads_the_directory_compose_mounts(self) -> None:
        """The dashboard provider's path is where compose mounts ops/grafana/dashboards, and
        the datasource URL is the prometheus service."""
        providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "findash.yml")
        path = providers["providers"][0]["options"]["path"]
        assert f"./ops/grafana/dashboards:{path}:ro" in SERVICES["grafana"]["volumes"]
        datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
        assert datasources["datasources"][0]["url"] == "http://prometheus:9090"


class TestAlerts:
    """The alert rules: the ones the issue asks for, labelled and linked to the runbook."""

    def test_every_required_alert_exists(self) -> None:
        """Each alert issue 12 lists has a rule."""
        names = {rule["alert"] for rule in alert_rules()}
        missing = {need: name for need, name in REQUIRED_ALERTS.items() if name not in names}
        assert not missing

    @pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
    def test_alert_has_severity_summary_and_a_runbook_section(self, rule: dict[str, Any]) -> None:
        """Severity is critical or warning, a summary and description say what broke, and
        the runbook link's anchor is a heading of docs/OPERATIONS.md."""
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        page, anchor = rule["annotations"]["runbook_url"].split("#")
        assert page == "docs/OPERATIONS.md"
        assert anchor == rule["alert"].lower()
        headings = re.findall(r"^#+ (.+)$", OPERATIONS.read_text(), flags=re.MULTILINE)
        assert anchor in {github_anchor(heading) for heading in headings}

    @pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
    def test_alert_waits_unless_it_reports_an_event(self, rule: dict[str, Any]) -> None:
        """Conditions must hold for a while (`for:`); only rules over a window fire at once."""
        assert ("for" in rule) != (rule["alert"] in FIRE_AT_ONCE)


class TestMetricContract:
    """The dashboard and the alerts query the metrics the processes export, and show them all."""

    def test_only_contract_metrics_are_queried(self) -> None:
        """Every series the rules and the dashboard query is in the contract, or `up`."""
        used = metric_names_used(RULES, DASHBOARD)
        assert used - CONTRACT == {"up"}

    def test_dashboard_shows_every_contract_metric(self) -> None:
        """No exported findash metric is missing from the dashboard."""
        shown = {
            name for expr in dashboard_expressions(DASHBOARD) for name in promql_metric_names(expr)
        }
        assert CONTRACT - shown == set()
