"""Market-data providers behind one interface (see docs/MARKET_DATA.md)."""

from workers.market_data.providers.base import (
    AssetInfo,
    Bar,
    Dividend,
    ErrorKind,
    History,
    Provider,
    ProviderError,
    Quote,
    Split,
)

__all__ = [
    "AssetInfo",
    "Bar",
    "Dividend",
    "ErrorKind",
    "History",
    "Provider",
    "ProviderError",
    "Quote",
    "Split",
]
