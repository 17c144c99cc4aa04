"""Canonical symbols (`BRK.B`, `^GSPC`, `EURUSD=X`) spelled the way each provider wants
them (pure)."""

from __future__ import annotations

from service.portfolio.fx import is_pair


def provider_symbol(provider: str, symbol: str) -> str:
    """`symbol` as `provider` spells it: share classes use `-` on Yahoo and Tiingo; an FX
    pair `EURUSD=X` is Yahoo's own spelling, Polygon's `C:EURUSD` and Tiingo's `eurusd`."""
    if is_pair(symbol):
        pair = symbol[:6]
        return {"polygon": f"C:{pair}", "tiingo": pair.lower()}.get(provider, symbol)
    if provider in ("yahoo", "tiingo"):
        return symbol.replace(".", "-")
    return symbol
