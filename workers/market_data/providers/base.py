"""The provider interface and its error classification.

Every adapter turns its provider's payloads into the same `History`, `Quote` and
`AssetInfo` (`workers.market_data.types`, where the price semantics are pinned). Every
failure is a `ProviderError` whose `kind` says whether to retry, fail over, or give up on
the symbol.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Protocol, TypeVar

import msgspec

from workers.market_data.types import AssetInfo, History, Quote


class ErrorKind(StrEnum):
    """What a failure means for the caller."""

    TRANSIENT = "transient"  # timeout, connection error, 5xx, 429: retry with backoff
    NOT_FOUND = "not_found"  # the provider does not know the symbol: try the next provider
    PERMANENT = "permanent"  # invalid request, bad key, plan limits: do not retry here
    MALFORMED = "malformed"  # a body we cannot decode: retried, the provider may recover
    UNAVAILABLE = "unavailable"  # the provider's circuit is open: go to the next one


class ProviderError(Exception):
    """A classified provider failure; `retry_after` is the server's hint in seconds."""

    def __init__(
        self,
        kind: ErrorKind,
        reason: str,
        *,
        provider: str = "",
        retry_after: float | None = None,
        throttled: bool = False,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.provider = provider
        self.retry_after = retry_after
        self.throttled = throttled

    @property
    def retryable(self) -> bool:
        """Whether trying the same request again later can succeed."""
        return self.kind in (ErrorKind.TRANSIENT, ErrorKind.MALFORMED)

    @property
    def unhealthy(self) -> bool:
        """Whether this failure counts against the provider's circuit breaker (429 does not)."""
        return self.retryable and not self.throttled


T = TypeVar("T")


def decode_payload(body: bytes, kind: type[T], *, provider: str) -> T:
    """Decode a provider's JSON body into `kind`; a body that does not fit is MALFORMED."""
    try:
        return msgspec.json.decode(body, type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProviderError(
            ErrorKind.MALFORMED, f"{provider}: malformed payload: {exc}", provider=provider
        ) from None


class Provider(Protocol):
    """What findash needs from a market-data provider; symbols are canonical (`BRK.B`)."""

    name: str

    async def history(self, symbol: str, *, start: date, end: date) -> History:
        """Daily bars for `symbol` over [start, end], inclusive."""
        ...

    async def quotes(self, symbols: list[str]) -> dict[str, Quote | ProviderError]:
        """The latest quote per symbol, or the error that symbol met."""
        ...

    async def asset_info(self, symbol: str) -> AssetInfo:
        """Reference data for `symbol`."""
        ...
