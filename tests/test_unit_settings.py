"""Settings: parsing, defaults and start-up errors that name the variable."""

from __future__ import annotations

import pytest

from service.core.settings import ConfigError, Settings, redact_secrets


class TestSettings:
    def test_defaults(self) -> None:
        """With nothing set, the API binds 127.0.0.1:8000 and logs JSON at INFO."""
        settings = Settings.from_env({})
        assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
        assert (settings.log_format, settings.log_level) == ("json", "INFO")

    def test_broker_and_backend_default_to_redis_url(self) -> None:
        """CELERY_BROKER_URL and CELERY_RESULT_BACKEND fall back to REDIS_URL."""
        settings = Settings.from_env({"REDIS_URL": "redis://h:1/3"})
        assert settings.celery_broker_url == "redis://h:1/3"
        assert settings.celery_result_backend == "redis://h:1/3"

    def test_explicit_broker_wins(self) -> None:
        """An explicit CELERY_BROKER_URL is kept."""
        settings = Settings.from_env(
            {"REDIS_URL": "redis://h:1/3", "CELERY_BROKER_URL": "redis://b:2/0"}
        )
        assert settings.celery_broker_url == "redis://b:2/0"

    def test_lists_are_comma_separated(self) -> None:
        """CORS_ORIGINS and MARKET_DATA_PROVIDERS split on commas and trim spaces."""
        settings = Settings.from_env(
            {"CORS_ORIGINS": "http://a, http://b", "MARKET_DATA_PROVIDERS": "tiingo,yahoo"}
        )
        assert settings.cors_origins == ("http://a", "http://b")
        assert settings.market_data_providers == ("tiingo", "yahoo")

    def test_settings_are_frozen(self) -> None:
        """Settings cannot be changed after loading."""
        settings = Settings.from_env({})
        with pytest.raises(AttributeError):
            settings.api_port = 1  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("env", "named"),
        [
            ({"API_PORT": "eighty"}, "API_PORT"),
            ({"API_PORT": "70000"}, "API_PORT"),
            ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
            ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
            ({"REDIS_URL": "http://h"}, "REDIS_URL"),
            ({"DATABASE_URL": "mysql://h"}, "DATABASE_URL"),
            (
                {"CELERY_VISIBILITY_TIMEOUT": "60", "CELERY_TASK_TIME_LIMIT": "600"},
                "CELERY_VISIBILITY_TIMEOUT",
            ),
            ({"MARKET_DATA_PROVIDERS": "yahoo,bloomberg"}, "MARKET_DATA_PROVIDERS"),
            ({"SUBMIT_RATE_LIMIT": "lots"}, "SUBMIT_RATE_LIMIT"),
        ],
    )
    def test_bad_values_name_the_variable(self, env: dict[str, str], named: str) -> None:
        """Each invalid value fails at load with a message naming its variable."""
        with pytest.raises(ConfigError, match=named):
            Settings.from_env(env)

    def test_redacted_masks_url_passwords(self) -> None:
        """`redacted()` never contains the Redis or Postgres password."""
        settings = Settings.from_env(
            {"REDIS_URL": "redis://:s3cret@h:1/0", "DATABASE_URL": "postgresql://u:pa55@h/db"}
        )
        text = repr(settings.redacted())
        assert "s3cret" not in text
        assert "pa55" not in text

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
            ("postgresql://user:pw@host/db", "postgresql://user:***@host/db"),
            ("redis://h:1/0", "redis://h:1/0"),
            (
                "see redis://a:b@c and postgres://d:e@f",
                "see redis://a:***@c and postgres://d:***@f",
            ),
        ],
    )
    def test_redact_secrets(self, raw: str, expected: str) -> None:
        """Passwords inside URLs are masked wherever they appear in a string."""
        assert redact_secrets(raw) == expected
