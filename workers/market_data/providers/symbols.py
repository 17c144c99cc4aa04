"""Canonical symbols (`BRK.B`, `^GSPC`, `EURUSD=X`) spelled the way each provider wants
them (pure)."""

from __future__ import annotations

from service.portfolio.fx import is_pair

# Yahoo's exchange suffixes keep their dot (`SAP.DE`, `VOD.L`); any other dot is a share
# class (`BRK.B` -> `BRK-B`).
EXCHANGE_SUFFIXES = frozenset(
    {"AS", "AX", "BR", "CO", "DE", "F", "HE", "HK", "L", "MC", "MI", "OL", "PA", "ST", "SW",
     "T", "TO", "V", "VI"}
)  # fmt: skip


def provider_symbol(provider: str, symbol: str) -> str:
    """`symbol` as `provider` spells it: share classes use `-` on Yahoo and Tiingo; an FX
    pair `EURUSD=X` is Yahoo's own spelling, Polygon's `C:EURUSD` and Tiingo's `eurusd`."""
    if is_pair(symbol):
        pair = symbol[:6]
        return {"polygon": f"C:{pair}", "tiingo": pair.lower()}.get(provider, symbol)
    stem, dot, suffix = symbol.rpartition(".")
    if provider == "yahoo" and dot and suffix in EXCHANGE_SUFFIXES:
        return f"{stem.replace('.', '-')}.{suffix}"
    if provider in ("yahoo", "tiingo"):
        return symbol.replace(".", "-")
    return symbol
