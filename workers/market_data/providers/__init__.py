"""Market-data providers behind one interface (see docs/MARKET_DATA.md): what the rest of
market data uses to build and call them. Their value types live in
`workers.market_data.types`."""

from workers.market_data.providers.base import ErrorKind, Provider, ProviderError
from workers.market_data.providers.registry import ProviderSlot, build_slots, process_slots

__all__ = [
    "ErrorKind",
    "Provider",
    "ProviderError",
    "ProviderSlot",
    "build_slots",
    "process_slots",
]
