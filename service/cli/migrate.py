"""`just migrate`: apply pending migrations to DATABASE_URL."""

from __future__ import annotations

import asyncio

from service.core.logs import configure_logging, get_logger
from service.core.migrations import migrate
from service.core.settings import Settings


def main() -> None:
    """Apply migrations and report how many ran."""
    settings = Settings.from_env()
    configure_logging(service="cli", level=settings.log_level, fmt=settings.log_format)
    applied = asyncio.run(migrate(settings.database_url))
    get_logger("service.migrate").info("migrations up to date", applied=len(applied))


if __name__ == "__main__":
    main()
