"""The one typed, frozen configuration object, read from the environment once.

Every process (API, worker, scheduler, CLI administration commands) calls
`Settings.from_env()` at its composition root and passes the result down.
No other module reads `os.environ`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from service.core.rates import RATE_PATTERN
from service.core.redis_connection import CertReqs, check_redis_url, check_tls_files

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
RateLimit = Annotated[str, msgspec.Meta(pattern=RATE_PATTERN)]
ProviderName = Literal["yahoo", "polygon", "tiingo"]

# Fields given as comma-separated lists in the environment.
_LIST_FIELDS = frozenset({"CORS_ORIGINS", "MARKET_DATA_PROVIDERS"})
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)


class ConfigError(Exception):
    """Raised at start-up when the environment holds an invalid configuration."""


class Settings(msgspec.Struct, frozen=True, rename="upper", kw_only=True):
    """Configuration for every findash process; field `x_y` is environment variable `X_Y`."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    celery_broker_url: str = ""
    celery_result_backend: str = ""
    # Redis TLS and Sentinel (docs/REDIS.md): a rediss:// URL needs REDIS_SSL_CA_CERTS unless
    # REDIS_SSL_CERT_REQS=none; a sentinel:// URL needs REDIS_SENTINEL_MASTER.
    redis_ssl_ca_certs: str = ""
    redis_ssl_certfile: str = ""
    redis_ssl_keyfile: str = ""
    redis_ssl_cert_reqs: CertReqs = "required"
    redis_sentinel_master: str = ""
    database_url: str = "postgresql://findash@127.0.0.1:5432/findash"
    database_pool_min: Annotated[int, msgspec.Meta(ge=0)] = 1
    database_pool_max: PositiveInt = 10

    api_host: str = "127.0.0.1"
    api_port: Port = 8000
    api_workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: PositiveInt = 1_048_576
    submit_rate_limit: RateLimit = "120/minute"
    # Fair share (issue 11): symbols a key's submits may ask for per window, open event
    # streams per key, and how long a request waits for a free database connection.
    submit_symbol_limit: RateLimit = "20000/minute"
    sse_streams_per_key: PositiveInt = 5
    db_acquire_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=60)] = 5.0
    publish_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=30)] = 2.0
    # How long a worker's or the scheduler's Redis command keeps retrying a lost connection
    # (service/core/redis_clients.py); the API's own budget is fixed under its 2 s bound.
    redis_retry_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 30.0
    # How long a worker body's Postgres read or write transaction is retried (backoff) when
    # the connection is lost or the server is restarting (workers/db_retry.py).
    database_retry_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 30.0

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"

    celery_visibility_timeout: PositiveInt = 7200
    celery_task_time_limit: PositiveInt = 1800
    celery_result_expires: PositiveInt = 86_400
    celery_unacked_restore_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 60
    task_stale_seconds: PositiveInt = 30
    task_lost_seconds: Annotated[int, msgspec.Meta(ge=0)] = 0
    task_sweep_interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0

    market_data_providers: tuple[ProviderName, ...] = ("yahoo",)
    yahoo_base_url: str = "https://query1.finance.yahoo.com"
    http_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0

    sim_exchange_host: str = "127.0.0.1"
    sim_exchange_port: Port = 8100
    sim_exchange_latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 20

    risk_free_rate: Annotated[float, msgspec.Meta(ge=-1, le=1)] = 0.0
    benchmark_symbol: str = "SPY"
    # The scheduled price update also refreshes any stored quote older than this.
    quote_stale_seconds: PositiveInt = 3600

    # --- Market data providers, limits and fan-out (issue 4; docs/MARKET_DATA.md) ---
    yahoo_quote_url: str = ""
    yahoo_cookie_url: str = ""
    yahoo_crumb_url: str = ""
    yahoo_rate_limit: RateLimit = "20/second"
    yahoo_concurrency: PositiveInt = 16
    polygon_base_url: str = "https://api.polygon.io"
    polygon_api_key: str = ""
    polygon_rate_limit: RateLimit = "5/minute"
    polygon_concurrency: PositiveInt = 2
    tiingo_base_url: str = "https://api.tiingo.com"
    tiingo_api_key: str = ""
    tiingo_rate_limit: RateLimit = "50/hour"
    tiingo_concurrency: PositiveInt = 2
    market_data_chunk_size: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 250
    market_data_max_helpers: Annotated[int, msgspec.Meta(ge=0, le=64)] = 4
    market_data_retry_budget_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 30.0
    market_data_overlap_days: Annotated[int, msgspec.Meta(ge=0, le=60)] = 5
    market_data_breaker_failures: PositiveInt = 5
    market_data_breaker_cooldown_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0

    # Scheduler (issue 6). `SCHEDULER_SCHEDULE=probe` swaps the market jobs for second-level
    # probe jobs (tests, smoke checks); `SCHEDULER_FAULT_PAUSE_AFTER_CLAIM_SECONDS` is a
    # fault-injection pause between claim and send, for failover tests only.
    scheduler_schedule: Literal["market", "probe"] = "market"
    scheduler_heartbeat_seconds: Annotated[float, msgspec.Meta(ge=0.2, le=3)] = 2.0
    scheduler_election_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=3)] = 1.0
    scheduler_session_timeout_seconds: Annotated[int, msgspec.Meta(ge=5, le=600)] = 10
    scheduler_catchup_seconds: Annotated[float, msgspec.Meta(ge=1, le=600)] = 30.0
    scheduler_fault_pause_after_claim_seconds: Annotated[float, msgspec.Meta(ge=0, le=60)] = 0.0
    scheduler_ledger_retention_days: Annotated[int, msgspec.Meta(ge=1)] = 90
    cleanup_task_retention_days: Annotated[int, msgspec.Meta(ge=1)] = 30

    # Prometheus (issue 12; docs/PROMETHEUS.md). The API serves GET /metrics on its own
    # port; a worker instance and a scheduler replica serve on these ports (0 = off) at
    # METRICS_HOST. A worker instance keeps its per-process files in
    # WORKER_METRICS_DIR/worker-<port> (default: under the system temp dir), wiped at start.
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    worker_metrics_dir: str = ""
    scheduler_metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0

    # A pinned clock, for tests and demos only (service/core/clock.py): every process reads
    # CLOCK_START (an aware ISO instant) at unix time CLOCK_ANCHOR (default: its own start)
    # and runs at CLOCK_SPEED times real time. Unset: the wall clock.
    clock_start: datetime | None = None
    clock_anchor: float | None = None
    clock_speed: Annotated[float, msgspec.Meta(gt=0)] = 1.0

    def __post_init__(self) -> None:
        if not self.celery_broker_url:
            msgspec.structs.force_setattr(self, "celery_broker_url", self.redis_url)
        if not self.celery_result_backend:
            msgspec.structs.force_setattr(self, "celery_result_backend", self.redis_url)
        if self.database_pool_min > self.database_pool_max:
            raise ValueError("DATABASE_POOL_MIN must not exceed DATABASE_POOL_MAX")
        if self.celery_visibility_timeout <= self.celery_task_time_limit:
            raise ValueError(
                "CELERY_VISIBILITY_TIMEOUT must exceed CELERY_TASK_TIME_LIMIT, "
                "or long tasks are delivered twice"
            )
        check_tls_files(self)
        for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
            check_redis_url(name, getattr(self, name.lower()), settings=self)
        if not self.database_url.startswith(("postgres://", "postgresql://")):
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        if self.clock_start is not None and self.clock_start.tzinfo is None:
            raise ValueError("CLOCK_START must carry a UTC offset, e.g. 2026-11-18T15:00-05:00")
        self._derive_yahoo_hosts()

    def _derive_yahoo_hosts(self) -> None:
        # Unset Yahoo hosts follow YAHOO_BASE_URL, so one variable points all of them at a
        # stand-in (the simulated exchange serves the cookie at /_fc); the real host keeps
        # Yahoo's real cookie host.
        base = self.yahoo_base_url.rstrip("/")
        real = base.endswith("finance.yahoo.com")
        derived = {
            "yahoo_quote_url": base,
            "yahoo_cookie_url": "https://fc.yahoo.com" if real else f"{base}/_fc",
            "yahoo_crumb_url": f"{base}/v1/test/getcrumb",
        }
        for name, value in derived.items():
            if not getattr(self, name):
                msgspec.structs.force_setattr(self, name, value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default `os.environ`), naming the variable on error."""
        source = os.environ if environ is None else environ
        names = {field.encode_name for field in msgspec.structs.fields(cls)}
        raw: dict[str, Any] = {}
        for name in names:
            value = source.get(name)
            if value is None or value == "":
                continue
            if name in _LIST_FIELDS:
                raw[name] = [item.strip() for item in value.split(",") if item.strip()]
            elif name == "LOG_LEVEL":
                raw[name] = value.upper()
            elif name == "REDIS_SSL_CERT_REQS":
                raw[name] = value.lower()
            else:
                raw[name] = value
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid configuration: {_name_variable(str(exc))}") from None

    @property
    def sim_exchange_url(self) -> str:
        """Base URL of the simulated exchange these settings point at."""
        return f"http://{self.sim_exchange_host}:{self.sim_exchange_port}"

    @property
    def celery_soft_time_limit(self) -> int:
        """Soft limit, a little under the hard one, so task bodies can clean up."""
        return max(1, self.celery_task_time_limit - max(5, self.celery_task_time_limit // 20))

    @property
    def task_lost_after_seconds(self) -> int:
        """How long a RETRY task may wait for redelivery before it is declared FAILURE."""
        return self.task_lost_seconds or self.celery_visibility_timeout + 300

    def redacted(self) -> dict[str, Any]:
        """All settings as a dict with passwords in URLs masked, fit for a log line."""
        return {
            key: (
                ("***" if value else "")
                if key.endswith("_api_key")
                else redact_secrets(value)
                if isinstance(value, str)
                else value
            )
            for key, value in msgspec.structs.asdict(self).items()
        }


def redact_secrets(text: str) -> str:
    """Mask the password part of any URL inside `text`."""
    return _URL_PASSWORD.sub(r"\g<scheme>\g<user>:***@", text)


def _name_variable(message: str) -> str:
    """Turn msgspec's `... - at `$.API_PORT`` into `API_PORT: ...`."""
    match = re.search(r"^(?P<msg>.*) - at `\$\.(?P<name>[A-Z_]+)(?P<rest>[^`]*)`$", message)
    if match is None:
        return message
    return f"{match['name']}: {match['msg']}"
