"""Redis URL schemes, TLS options and Sentinel: what Settings accepts or refuses at load,
and what clients and Celery are handed."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from service.core.celery_config import celery_config
from service.core.redis_connection import redis_endpoint, sentinel_addresses
from service.core.settings import ConfigError, Settings, redact_secrets


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    """A file standing in for a CA bundle (only its existence is checked at load)."""
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


class TestRefusals:
    @pytest.mark.parametrize(
        "variable", ["REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"]
    )
    def test_bare_rediss_names_the_variable_and_the_ca_setting(self, variable: str) -> None:
        """A rediss:// URL without REDIS_SSL_CA_CERTS refuses to load, naming both variables."""
        with pytest.raises(ConfigError) as refused:
            Settings.from_env({variable: "rediss://:hunter2@h:6380/0"})
        message = str(refused.value)
        assert f"{variable} is a rediss:// URL" in message
        assert "REDIS_SSL_CA_CERTS is not set" in message
        assert "hunter2" not in message

    def test_explicit_none_turns_verification_off(self) -> None:
        """REDIS_SSL_CERT_REQS=none (any case) lets a bare rediss:// load, unverified."""
        settings = Settings.from_env(
            {"REDIS_URL": "rediss://h:6380/0", "REDIS_SSL_CERT_REQS": "NONE"}
        )
        tls = redis_endpoint(settings).tls
        assert tls is not None
        assert tls.options()["ssl_cert_reqs"] == ssl.CERT_NONE
        assert tls.options()["ssl_check_hostname"] is False

    def test_tls_options_in_the_url_are_refused(self, ca_file: str) -> None:
        """`ssl_*` query parameters (which would override our options in kombu) are refused."""
        with pytest.raises(
            ConfigError, match="CELERY_BROKER_URL: TLS options do not go in the URL"
        ):
            Settings.from_env(
                {
                    "REDIS_SSL_CA_CERTS": ca_file,
                    "CELERY_BROKER_URL": "rediss://h:6380/0?ssl_cert_reqs=none",
                }
            )

    def test_missing_ca_file_is_named(self, tmp_path: Path) -> None:
        """A REDIS_SSL_CA_CERTS that names no file refuses to load, naming the variable."""
        with pytest.raises(ConfigError, match="REDIS_SSL_CA_CERTS: no such file"):
            Settings.from_env({"REDIS_SSL_CA_CERTS": str(tmp_path / "absent.pem")})

    def test_sentinel_needs_a_master_name(self) -> None:
        """A sentinel:// URL without REDIS_SENTINEL_MASTER refuses to load, naming it."""
        with pytest.raises(
            ConfigError, match="REDIS_URL is a sentinel:// URL: set REDIS_SENTINEL_MASTER"
        ):
            Settings.from_env({"REDIS_URL": "sentinel://h1:26379;sentinel://h2:26379"})

    def test_sentinel_list_parts_must_be_sentinels(self) -> None:
        """Every `;`-separated part of a sentinel list must itself be a sentinel:// URL."""
        with pytest.raises(ConfigError, match="REDIS_URL: every ';'-separated part"):
            Settings.from_env(
                {"REDIS_URL": "sentinel://h1:26379;redis://h2", "REDIS_SENTINEL_MASTER": "m"}
            )

    def test_other_schemes_are_refused(self) -> None:
        """An unknown scheme is refused with the three accepted ones named."""
        with pytest.raises(ConfigError, match="redis://, rediss:// or sentinel://"):
            Settings.from_env({"CELERY_RESULT_BACKEND": "amqp://h"})


class TestEndpoints:
    def test_rediss_gets_verified_tls_everywhere(self, ca_file: str) -> None:
        """With a CA, clients and Celery's broker and backend all get CERT_REQUIRED, the CA,
        and hostname checking."""
        settings = Settings.from_env(
            {"REDIS_URL": "rediss://u:pw@h:6380/0", "REDIS_SSL_CA_CERTS": ca_file}
        )
        expected = {
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
            "ssl_ca_certs": ca_file,
            "ssl_certfile": None,
            "ssl_keyfile": None,
            "ssl_check_hostname": True,
        }
        tls = redis_endpoint(settings).tls
        assert tls is not None
        assert tls.options() == expected
        config = celery_config(settings)
        assert config["broker_use_ssl"] == expected
        assert config["redis_backend_use_ssl"] == expected

    def test_plain_redis_gets_no_tls(self) -> None:
        """A redis:// URL gets no TLS options and Celery no ssl settings."""
        settings = Settings.from_env({"REDIS_URL": "redis://h:1/0"})
        assert redis_endpoint(settings).tls is None
        assert "broker_use_ssl" not in celery_config(settings)
        assert "redis_backend_use_ssl" not in celery_config(settings)

    def test_sentinel_list_is_read(self) -> None:
        """A sentinel list yields every sentinel (default port 26379) and the master's db,
        ACL user and password from the first URL; Celery gets the master's name."""
        url = "sentinel://app:s3cret@h1:26380/2;sentinel://app:s3cret@h2"
        settings = Settings.from_env({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "findash"})
        endpoint = redis_endpoint(settings)
        assert endpoint.sentinels == (("h1", 26380), ("h2", 26379))
        assert endpoint.master_name == "findash"
        assert endpoint.master_options() == {"db": 2, "username": "app", "password": "s3cret"}
        config = celery_config(settings)
        assert config["broker_transport_options"]["master_name"] == "findash"
        assert config["result_backend_transport_options"]["master_name"] == "findash"
        assert config["broker_transport_options"]["visibility_timeout"] == 7200

    def test_sentinel_addresses_reject_plain_urls(self) -> None:
        """`sentinel_addresses` refuses a part that is not a sentinel:// URL."""
        with pytest.raises(ValueError, match="sentinel://host:port"):
            sentinel_addresses("redis://h:1")


class TestSecretsAndPostgres:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("redis://app:pw@h:1/0", "redis://app:***@h:1/0"),
            ("rediss://:pw@h:1/0", "rediss://:***@h:1/0"),
            (
                "sentinel://:pw@h1:26379/0;sentinel://:pw@h2:26379/0",
                "sentinel://:***@h1:26379/0;sentinel://:***@h2:26379/0",
            ),
        ],
    )
    def test_new_schemes_are_redacted(self, raw: str, expected: str) -> None:
        """Passwords in ACL, TLS and Sentinel URLs are masked in log text."""
        assert redact_secrets(raw) == expected

    def test_redacted_settings_hide_sentinel_passwords(self) -> None:
        """`redacted()` of sentinel settings shows no password in any Redis URL setting."""
        url = "sentinel://app:s3cret@h1:26379/0;sentinel://app:s3cret@h2:26379/0"
        settings = Settings.from_env({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "m"})
        assert "s3cret" not in repr(settings.redacted())

    @pytest.mark.parametrize("mode", ["require", "verify-full", "disable"])
    def test_database_url_keeps_sslmode(self, mode: str) -> None:
        """DATABASE_URL's query (sslmode and the rest) reaches asyncpg untouched."""
        url = f"postgresql://u:pw@db.example:5432/findash?sslmode={mode}&sslrootcert=/ca.pem"
        assert Settings.from_env({"DATABASE_URL": url}).database_url == url
