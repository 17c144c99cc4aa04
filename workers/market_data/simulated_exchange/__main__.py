"""`python -m workers.market_data.simulated_exchange`: serve it until interrupted."""

from __future__ import annotations

import click
from aiohttp import web

from service.core.clock import clock_from_settings, exchange_today
from service.core.logs import configure_logging, get_logger
from service.core.settings import Settings
from service.core.trading_calendar import load_holiday_tables
from workers.market_data.simulated_exchange.app import ExchangeConfig, SimulatedExchange

log = get_logger("workers.market_data.simulated_exchange")


@click.command()
@click.option("--host", default=None, help="Interface to bind (default SIM_EXCHANGE_HOST).")
@click.option("--port", type=int, default=None, help="Port (default SIM_EXCHANGE_PORT).")
@click.option("--latency-ms", type=int, default=None, help="Added latency per request.")
def main(host: str | None, port: int | None, latency_ms: int | None) -> None:
    """Serve the simulated exchange until interrupted."""
    settings = Settings.from_env()
    configure_logging(service="exchange", level=settings.log_level, fmt=settings.log_format)
    config = ExchangeConfig(
        latency_ms=settings.sim_exchange_latency_ms if latency_ms is None else latency_ms
    )
    clock = clock_from_settings(settings)
    load_holiday_tables(around=exchange_today(clock))
    exchange = SimulatedExchange(config, clock=clock)
    bind_host = host or settings.sim_exchange_host
    bind_port = settings.sim_exchange_port if port is None else port
    log.info(
        "simulated exchange listening", host=bind_host, port=bind_port, latency_ms=config.latency_ms
    )
    web.run_app(
        exchange.app(),
        host=bind_host,
        port=bind_port,
        print=None,
        access_log=None,
        handle_signals=True,
    )


if __name__ == "__main__":
    main()
