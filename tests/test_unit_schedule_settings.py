"""Scheduler settings and the lock connection's server settings derived from them."""

from __future__ import annotations

import pytest

from service.core.settings import ConfigError, Settings
from service.scheduler.leader import lock_server_settings


class TestSchedulerSettings:
    def test_defaults(self) -> None:
        """By default the market schedule runs with a 2 s heartbeat and a 10 s session timeout."""
        settings = Settings.from_env({})
        assert settings.scheduler_schedule == "market"
        assert settings.scheduler_heartbeat_seconds == 2.0
        assert settings.scheduler_session_timeout_seconds == 10
        assert settings.scheduler_fault_pause_after_claim_seconds == 0

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("SCHEDULER_SCHEDULE", "weekly"),
            ("SCHEDULER_SESSION_TIMEOUT_SECONDS", "2"),
            ("SCHEDULER_HEARTBEAT_SECONDS", "10"),
            ("SCHEDULER_ELECTION_SECONDS", "0"),
        ],
    )
    def test_bad_values_name_the_variable(self, name: str, value: str) -> None:
        """An out-of-range scheduler setting stops start-up naming the variable."""
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


class TestLockServerSettings:
    def test_timeouts_follow_the_session_timeout(self) -> None:
        """Idle, idle-in-transaction, statement and TCP user timeouts all equal the session
        timeout, and keepalives probe well within it."""
        settings = Settings.from_env({"SCHEDULER_SESSION_TIMEOUT_SECONDS": "12"})
        server = lock_server_settings(settings, name="h:1")
        assert {
            key: server[key]
            for key in (
                "idle_session_timeout",
                "idle_in_transaction_session_timeout",
                "statement_timeout",
                "tcp_user_timeout",
            )
        } == dict.fromkeys(
            (
                "idle_session_timeout",
                "idle_in_transaction_session_timeout",
                "statement_timeout",
                "tcp_user_timeout",
            ),
            "12000",
        )
        keepalive_total = int(server["tcp_keepalives_idle"]) + int(
            server["tcp_keepalives_interval"]
        ) * int(server["tcp_keepalives_count"])
        assert keepalive_total <= 12
        assert server["application_name"] == "findash-scheduler h:1"
