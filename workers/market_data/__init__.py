"""Market data: daily history, latest quotes and reference data, fetched concurrently from
the configured providers and stored idempotently. docs/MARKET_DATA.md.

Other packages use the task bodies, the bar writer and the vocabulary below; everything
else in here is private to market data.
"""

from workers.market_data.demo import demo_fetch
from workers.market_data.store import bar_rows, upsert_bars
from workers.market_data.tasks import (
    fetch_asset_info,
    fetch_market_data,
    fetch_market_data_chunk,
    store_session_closes,
    update_portfolio_prices,
)
from workers.market_data.types import AssetInfo, Bar, Dividend, History, Quote, Split

__all__ = [
    "AssetInfo",
    "Bar",
    "Dividend",
    "History",
    "Quote",
    "Split",
    "bar_rows",
    "demo_fetch",
    "fetch_asset_info",
    "fetch_market_data",
    "fetch_market_data_chunk",
    "store_session_closes",
    "update_portfolio_prices",
    "upsert_bars",
]
