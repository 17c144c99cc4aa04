"""An offline stand-in for Yahoo, Polygon and Tiingo: deterministic, realistic daily bars.

Run it with `python -m workers.market_data.simulated_exchange`; see `app` for the routes,
the faults it injects and its control endpoints, and `series` for the data.
"""

from workers.market_data.simulated_exchange.app import ExchangeConfig, Fault, SimulatedExchange
from workers.market_data.simulated_exchange.series import (
    Series,
    build_series,
    currency_of,
    price_places,
    symbol_seed,
)
from workers.market_data.simulated_exchange.yahoo import chart_payload

__all__ = [
    "ExchangeConfig",
    "Fault",
    "Series",
    "SimulatedExchange",
    "build_series",
    "chart_payload",
    "currency_of",
    "price_places",
    "symbol_seed",
]
