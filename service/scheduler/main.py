"""`just scheduler`: one scheduler replica (several may run; one leads, see docs/SCHEDULER.md)."""

from __future__ import annotations

import asyncio
import logging
import signal

from service.core.clock import clock_from_settings, exchange_today
from service.core.logs import configure_logging, get_logger
from service.core.metrics_exposition import serve_default
from service.core.settings import Settings
from service.core.trading_calendar import load_holiday_tables
from service.scheduler.jobs import jobs_for
from service.scheduler.replica import Scheduler, create_publisher

log = get_logger(__name__)


async def run_scheduler(settings: Settings, *, stop: asyncio.Event) -> None:
    """Run one replica of the configured schedule until `stop` is set."""
    publisher = create_publisher(settings)
    try:
        scheduler = Scheduler(
            settings,
            jobs=jobs_for(settings.scheduler_schedule),
            publisher=publisher,
            clock=clock_from_settings(settings),
            clock_speed=settings.clock_speed if settings.clock_start is not None else 1.0,
        )
        await scheduler.run(stop)
    finally:
        publisher.close()


def main() -> None:
    """Run the scheduler until SIGINT or SIGTERM."""
    settings = Settings.from_env()
    configure_logging(service="scheduler", level=settings.log_level, fmt=settings.log_format)
    # APScheduler only wakes the leader; our own lines name each claim and send.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    log.info("scheduler configuration", schedule=settings.scheduler_schedule)
    load_holiday_tables(around=exchange_today(clock_from_settings(settings)))
    if settings.scheduler_metrics_port:
        serve_default(host=settings.metrics_host, port=settings.scheduler_metrics_port)
        log.info(
            "scheduler metrics served",
            host=settings.metrics_host,
            port=settings.scheduler_metrics_port,
        )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_scheduler(settings, stop=stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
