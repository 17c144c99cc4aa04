"""`just api`: serve the API with uvicorn, logging through the shared pipeline."""

from __future__ import annotations

import uvicorn

from service.api.app import create_app
from service.core.logs import configure_logging
from service.core.metrics_exposition import api_metrics_dir, prepare_multiprocess_dir
from service.core.settings import ConfigError, Settings


def main() -> None:
    """Read settings once, configure logs, serve until interrupted.

    With API_WORKERS > 1 uvicorn starts that many processes; each builds its app with
    `create_app_from_env` (same settings, same logging) and records metrics to a shared
    multiprocess directory.
    """
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise SystemExit(f"findash api refused to start: {exc}") from None
    configure_logging(service="api", level=settings.log_level, fmt=settings.log_format)
    options = {
        "host": settings.api_host,
        "port": settings.api_port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": 10,
    }
    if settings.api_workers > 1:
        # Before the fork: every process records to files that /metrics sums
        # (docs/PROMETHEUS.md), whichever process a scrape reaches.
        prepare_multiprocess_dir(api_metrics_dir(settings))
        uvicorn.run(
            "service.api.app:create_app_from_env",
            factory=True,
            workers=settings.api_workers,
            **options,  # type: ignore[arg-type]
        )
    else:
        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
