"""The `findash` CLI against a live API and database: output, --wait and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("worker")


def findash(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def cli_env(base_env: dict[str, str], api_url: str) -> dict[str, str]:
    """The environment of a CLI user pointed at the session API."""
    return {**base_env, "FINDASH_API_URL": api_url}


def set_latency(exchange: str, latency_ms: int) -> None:
    """Slow the simulated exchange down (or back up)."""
    request = urllib.request.Request(  # noqa: S310 - loopback http URL
        f"{exchange}/_sim/config",
        method="PUT",
        data=json.dumps({"latency_ms": latency_ms}).encode(),
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        assert response.status == 200


def _create_user(cli_env: dict[str, str], *flags: str) -> dict[str, Any]:
    done = findash(
        "users",
        "create",
        "--email",
        f"{uuid.uuid4().hex[:8]}@cli.test",
        "--json",
        *flags,
        env=cli_env,
    )
    assert done.returncode == 0, done.stderr
    created: dict[str, Any] = json.loads(done.stdout)
    return created


class TestCli:
    def test_users_create_and_submit_with_wait(self, cli_env: dict[str, str]) -> None:
        """A new user's key submits a fetch that --wait follows to SUCCESS (exit 0)."""
        user = _create_user(cli_env)
        assert set(user) == {"user_id", "key_id", "api_key"}
        env = {**cli_env, "FINDASH_API_KEY": user["api_key"]}
        tag = uuid.uuid4().hex[:4].upper()
        done = findash(
            "--json",
            "fetch-market-data",
            "-s",
            f"C{tag}A",
            "-s",
            f"C{tag}B",
            "--period",
            "1mo",
            "--wait",
            env=env,
        )
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout)
        assert final["state"] == "SUCCESS"
        assert final["result"]["fetched"] == 2
        history = findash("--json", "history", "--limit", "5", env=env)
        assert history.returncode == 0
        assert json.loads(history.stdout)["tasks"][0]["task_id"] == final["task_id"]

    def test_refusals_exit_2(self, cli_env: dict[str, str]) -> None:
        """An unknown task, a bad request and a revoked key all exit 2 with the reason."""
        user = _create_user(cli_env)
        env = {**cli_env, "FINDASH_API_KEY": user["api_key"]}
        missing = findash("status", str(uuid.uuid4()), env=env)
        assert missing.returncode == 2
        assert "404" in missing.stderr
        bad = findash("fetch-market-data", "-s", "not a symbol", env=env)
        assert bad.returncode == 2
        assert "symbols[0]" in bad.stderr
        revoked = findash("users", "revoke-key", str(user["key_id"]), env=cli_env)
        assert revoked.returncode == 0
        after = findash("list-active", env=env)
        assert after.returncode == 2
        assert "401" in after.stderr

    def test_failed_asset_info_exits_1_with_the_reasons(self, cli_env: dict[str, str]) -> None:
        """`asset-info --wait` for a symbol no provider knows prints the FAILURE with the
        providers' reasons and exits 1."""
        user = _create_user(cli_env)
        env = {**cli_env, "FINDASH_API_KEY": user["api_key"]}
        symbol = f"ZZ{uuid.uuid4().hex[:4].upper()}"  # the exchange knows no "ZZ…" symbol
        done = findash("--json", "asset-info", symbol, "--wait", env=env)
        assert done.returncode == 1, done.stderr
        final = json.loads(done.stdout)
        assert final["state"] == "FAILURE"
        assert final["error"]["type"] == "AssetInfoUnavailable"
        assert f"{symbol} (not_found): yahoo: " in final["error"]["message"]

    def test_cancelled_task_exits_1(self, cli_env: dict[str, str], exchange: str) -> None:
        """`status` of a cancelled task prints it and exits 1."""
        user = _create_user(cli_env)
        env = {**cli_env, "FINDASH_API_KEY": user["api_key"]}
        tag = uuid.uuid4().hex[:4].upper()
        symbols = [arg for i in range(100) for arg in ("-s", f"X{tag}{i}")]
        set_latency(exchange, 3000)  # the cancel finds it still running
        try:
            submitted = findash("--json", "fetch-market-data", *symbols, env=env)
            task_id = json.loads(submitted.stdout)["task_id"]
            assert findash("cancel", task_id, env=env).returncode == 0
        finally:
            set_latency(exchange, 0)
        waited = findash("--json", "status", task_id, "--wait", env=env)
        assert waited.returncode == 1
        assert json.loads(waited.stdout)["state"] == "REVOKED"

    def test_worker_stats_for_admin(self, cli_env: dict[str, str]) -> None:
        """An admin sees the running worker; a plain user is refused (exit 2)."""
        admin = _create_user(cli_env, "--admin")
        done = findash(
            "--json", "worker-stats", env={**cli_env, "FINDASH_API_KEY": admin["api_key"]}
        )
        assert done.returncode == 0, done.stderr
        assert any(w["hostname"].startswith("session@") for w in json.loads(done.stdout))
        plain = _create_user(cli_env)
        refused = findash("worker-stats", env={**cli_env, "FINDASH_API_KEY": plain["api_key"]})
        assert refused.returncode == 2

    def test_portfolio_commands_record_and_read(self, cli_env: dict[str, str]) -> None:
        """A user creates a portfolio, records a deposit and a buy, is refused an oversell
        (exit 2 with the reason), lists transactions, reads holdings, then deletes it all."""
        user = _create_user(cli_env)
        env = {**cli_env, "FINDASH_API_KEY": user["api_key"]}

        def run(*args: str) -> Any:
            done = findash("--json", "portfolios", *args, env=env)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)

        portfolio = str(run("create", "cli main")["id"])
        run("add-tx", portfolio, "deposit", "2024-01-02", "--amount", "1000")
        buy = run(
            "add-tx", portfolio, "BUY", "2024-01-03", "-s", "clia", "-q", "2.5", "--price", "99.5"
        )
        assert buy == {**buy, "symbol": "CLIA", "quantity": 2.5, "price": 99.5}
        refused = findash(
            "portfolios", "add-tx", portfolio, "SELL", "2024-01-04", "-s", "CLIA", "-q", "3",
            "--price", "10", env=env,
        )  # fmt: skip
        assert refused.returncode == 2
        assert "only 2.5 held" in refused.stderr
        assert [t["type"] for t in run("transactions", portfolio)] == ["DEPOSIT", "BUY"]
        held = run("holdings", portfolio, "--as-of", "2024-01-05")
        assert [(h["symbol"], h["quantity"]) for h in held["holdings"]] == [("CLIA", 2.5)]
        assert [p["id"] for p in run("list")] == [int(portfolio)]
        run("delete", portfolio)
        assert run("list") == []
