"""`just api`: serve the API with uvicorn, logging through the shared pipeline."""

from __future__ import annotations

import uvicorn

from service.app import create_app
from service.logs import configure_logging
from service.settings import Settings


def main() -> None:
    """Read settings once, configure logs, serve until interrupted."""
    settings = Settings.from_env()
    configure_logging(service="api", level=settings.log_level, fmt=settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
