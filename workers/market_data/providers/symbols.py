"""Canonical symbols (`BRK.B`, `^GSPC`) spelled the way each provider wants them (pure)."""

from __future__ import annotations


def provider_symbol(provider: str, symbol: str) -> str:
    """`symbol` as `provider` spells it: share classes use `-` on Yahoo and Tiingo."""
    if provider in ("yahoo", "tiingo"):
        return symbol.replace(".", "-")
    return symbol
