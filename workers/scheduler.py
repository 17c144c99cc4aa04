"""`just scheduler`: a scheduler replica (leader election and jobs come with the scheduler work)."""

from __future__ import annotations

import asyncio
import signal

from service.logs import configure_logging, get_logger
from service.settings import Settings

log = get_logger(__name__)


async def run_scheduler(settings: Settings, *, stop: asyncio.Event) -> None:
    """Idle until `stop` is set."""
    log.info("scheduler started", jobs=0)
    await stop.wait()
    log.info("scheduler stopped")


def main() -> None:
    """Run the scheduler until SIGINT or SIGTERM."""
    settings = Settings.from_env()
    configure_logging(service="scheduler", level=settings.log_level, fmt=settings.log_format)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_scheduler(settings, stop=stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
