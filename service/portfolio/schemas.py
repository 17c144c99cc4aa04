"""Request and response bodies of the portfolio API.

Money and quantities arrive as JSON numbers and are decoded exactly into
Decimal; responses carry them as JSON numbers again. Cross-field rules raise
`ValueError("<field>: <message>")` so the problem details name the field.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from service.core.contracts import SYMBOL_PATTERN
from service.portfolio.positions import ZERO, TxType

Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN, examples=["AAPL"])]
Currency = Annotated[
    str, msgspec.Meta(pattern="^[A-Z]{3}$", description="ISO 4217 code", examples=["USD"])
]
# A price's currency: ISO 4217, or a minor unit quoted by exchanges (GBp = pence, ZAc = cents);
# case matters, GBp is a hundredth of GBP.
PriceCurrency = Annotated[
    str,
    msgspec.Meta(
        pattern="^([A-Z]{3}|GBp|ZAc)$",
        description="ISO 4217 code, or GBp/ZAc for pence/cents",
        examples=["EUR"],
    ),
]
Note = Annotated[str, msgspec.Meta(max_length=1000, pattern="^[^\\x00]*$")]
# Postgres text cannot hold NUL; the pattern states it so the API refuses it with a 400.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern="^[^\\x00]*$")]
LIMIT = Decimal("1e12")
# The scale of each column in migrations/0004_portfolios.sql and 0009_transaction_currency.sql.
DECIMAL_PLACES = {"quantity": 10, "price": 6, "amount": 6, "fee": 6, "fx_rate": 10}
EARLIEST = dt.date(1970, 1, 1)
LATEST = dt.date(2100, 1, 1)
_FIELDS_BY_TYPE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # type: (required, allowed besides fee)
    "BUY": (frozenset({"symbol", "quantity", "price"}), frozenset({"symbol", "quantity", "price"})),
    "SELL": (
        frozenset({"symbol", "quantity", "price"}),
        frozenset({"symbol", "quantity", "price"}),
    ),
    "DIVIDEND": (frozenset({"symbol", "amount"}), frozenset({"symbol", "amount"})),
    "DEPOSIT": (frozenset({"amount"}), frozenset({"amount"})),
    "WITHDRAWAL": (frozenset({"amount"}), frozenset({"amount"})),
    "FEE": (frozenset({"amount"}), frozenset({"amount", "symbol"})),
}


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base for request bodies: unknown fields are rejected."""


class PortfolioCreate(Body):
    """A new portfolio."""

    name: Name
    base_currency: Currency = "USD"
    auto_dividends: bool = False

    def __post_init__(self) -> None:
        self.name = self.name.strip()
        if not self.name:
            raise ValueError("name: must not be blank")


class PortfolioUpdate(Body):
    """A change to a portfolio's settings."""

    auto_dividends: Annotated[
        bool,
        msgspec.Meta(
            description="Turn the stored dividends of held symbols into generated DIVIDEND "
            "transactions (true), or remove the generated ones (false)."
        ),
    ]


class PortfolioOut(msgspec.Struct, frozen=True):
    """A portfolio; with `auto_dividends`, dividends of held symbols are generated as
    DIVIDEND transactions (`generated: true`)."""

    id: int
    name: str
    base_currency: str
    created_at: dt.datetime
    auto_dividends: bool


class TransactionCreate(Body):
    """A transaction; which fields are required depends on `type`."""

    type: TxType
    date: dt.date
    symbol: Symbol | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    fee: Decimal = ZERO
    currency: PriceCurrency | None = None
    fx_rate: Decimal | None = None
    note: Note | None = None

    def __post_init__(self) -> None:
        if not EARLIEST <= self.date < LATEST:
            raise ValueError(f"date: must be between {EARLIEST} and {LATEST}")
        given = {
            name
            for name in ("symbol", "quantity", "price", "amount")
            if getattr(self, name) is not None
        }
        required, allowed = _FIELDS_BY_TYPE[self.type]
        for name in sorted(required - given):
            raise ValueError(f"{name}: required for {self.type}")
        for name in sorted(given - allowed):
            raise ValueError(f"{name}: not used by {self.type}")
        for name, places in DECIMAL_PLACES.items():
            value: Decimal | None = getattr(self, name)
            if value is None:
                continue
            if not (value.is_finite() and abs(value) < LIMIT):
                raise ValueError(f"{name}: must be a finite number below {LIMIT:,.0f}")
            # Stored as numeric with this scale: more places would be rounded silently, and a
            # tiny positive value would round to zero and break the table's checks.
            if -int(value.normalize().as_tuple().exponent) > places:
                raise ValueError(f"{name}: at most {places} decimal places")
        for name in ("quantity", "amount", "fx_rate"):
            if (value := getattr(self, name)) is not None and value <= 0:
                raise ValueError(f"{name}: must be greater than 0")
        for name in ("price", "fee"):
            if (value := getattr(self, name)) is not None and value < 0:
                raise ValueError(f"{name}: must not be negative")
        if self.symbol is not None:
            self.symbol = self.symbol.upper()


class TransactionOut(msgspec.Struct, frozen=True):
    """A recorded transaction; `id` orders same-date transactions. `generated` marks a
    DIVIDEND made from a stored dividend (`auto_dividends`), not recorded by the user."""

    id: int
    type: str
    date: dt.date
    symbol: str | None
    quantity: float | None
    price: float | None
    amount: float | None
    fee: float
    currency: str | None
    fx_rate: float | None
    note: str | None
    generated: bool = False


class ImportResult(msgspec.Struct, frozen=True):
    """What an import did: rows recorded, and rows skipped as already recorded."""

    imported: int
    duplicates: int


class HoldingOut(msgspec.Struct, frozen=True):
    """A current position, valued at `price`: the latest quote when it traded after the last
    close, else the last close (`price_source`). `stale` is true when that price is older
    than the last completed session's close. Price fields are null when nothing is known.

    `close` and `price` are in the asset's `currency`; the money fields (`average_cost`,
    `cost_basis`, `market_value`, `unrealized_pnl` and its FX part `unrealized_fx_pnl`) are
    in the portfolio's base currency, converted at `fx_rate` (base per unit of `currency`).
    """

    symbol: str
    quantity: float
    average_cost: float
    cost_basis: float
    close: float | None
    price_date: dt.date | None
    price: float | None
    price_time: dt.datetime | None
    price_source: Literal["quote", "close"] | None
    stale: bool
    market_value: float | None
    unrealized_pnl: float | None
    weight: float | None
    currency: str | None = None
    fx_rate: float | None = None
    unrealized_fx_pnl: float | None = None


class HoldingsOut(msgspec.Struct, frozen=True):
    """Positions and cash at the newest prices; totals are null if any price or FX rate is
    missing (`missing_prices`, `missing_fx` as `EURUSD 2025-03-07`).

    `price_time` is the oldest price time the totals used and `stale_prices` the symbols
    whose price is stale, so one response can say "as of 14:05 ET, 2 prices stale". Every
    money figure is in `currency`, the portfolio's base currency; `realized_fx_pnl` is the
    FX part of `realized_pnl`.
    """

    portfolio_id: int
    as_of: dt.date
    currency: str | None
    cash: float
    market_value: float | None
    total_value: float | None
    realized_pnl: float
    income: float
    fees: float
    net_invested: float
    holdings: list[HoldingOut]
    missing_prices: list[str]
    price_time: dt.datetime | None
    stale_prices: list[str]
    missing_fx: list[str] = []
    realized_fx_pnl: float = 0.0


class SnapshotOut(msgspec.Struct, frozen=True):
    """One stored daily snapshot. `stale_prices` names each holding valued at a close older
    than the snapshot's date (its close could not be fetched), with that close's date."""

    date: dt.date
    total_value: float
    market_value: float
    cash: float
    cost_basis: float
    unrealized_pnl: float
    realized_pnl: float
    income: float
    fees: float
    net_invested: float
    net_flow: float
    day_change: float
    stale_prices: dict[str, dt.date]
    holdings: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET


ReportFormat = Literal["json", "html"]


def number(value: Decimal | None) -> float | None:
    """A Decimal as a JSON number (None stays None)."""
    return None if value is None else float(value)
