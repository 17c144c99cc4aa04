"""Every background task's contract, written once: its name, its queue, its arguments and
their validation.

A contract is a frozen msgspec Struct. The API takes it as the request body, the registry
stores its canonical form, the scheduler's jobs are instances of it, Celery's routes come
from its `queue`, and the worker decodes the message into it before the body runs. Adding
a task is one contract here (listed in `CONTRACTS`) plus one body in `workers/`; see
docs/TASKS.md.

Cross-field rules raise `ValueError("<field>: <message>")`, so the API's problem details
name the field.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, Self

import msgspec

from service.core.trading_calendar import NYSE, TradingCalendar

QueueName = Literal["scheduled", "market_data", "analytics"]
QUEUE_MARKET_DATA: QueueName = "market_data"
QUEUE_ANALYTICS: QueueName = "analytics"
# Every fire of the scheduler goes here, whatever its task, so user submits (on the two
# queues above) can never queue in front of it; a worker reserved for it (`-Q scheduled`)
# keeps capacity free for fires however busy the other workers are (docs/SCHEDULER.md).
QUEUE_SCHEDULED: QueueName = "scheduled"
ALL_QUEUES: tuple[QueueName, ...] = (QUEUE_SCHEDULED, QUEUE_MARKET_DATA, QUEUE_ANALYTICS)
# What `-Q` a general worker consumes: every queue, scheduled fires first in the list.
WORKER_QUEUES = ",".join(ALL_QUEUES)

SYMBOL_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9.\-=^]{0,14}$"
MAX_SYMBOLS = 5000
MAX_PORTFOLIO_IDS = 1000
MAX_DAYS = 3650
MAX_BACKFILL_DAYS = 3660
DEFAULT_PERFORMANCE_DAYS = 30
DEFAULT_REPORT_DAYS = 365

Symbol = Annotated[
    str,
    msgspec.Meta(
        pattern=SYMBOL_PATTERN,
        description="Ticker, e.g. AAPL, BRK.B or ^GSPC (upper-cased by the API).",
        examples=["AAPL"],
    ),
]
Symbols = Annotated[list[Symbol], msgspec.Meta(min_length=1, max_length=MAX_SYMBOLS)]
Period = Literal["1mo", "3mo", "6mo", "1y", "2y", "5y", "max"]
Days = Annotated[int, msgspec.Meta(ge=1, le=MAX_DAYS)]
# 2**53 - 1: every id up to it is exact as a JSON number, in a browser too.
Id = Annotated[int, msgspec.Meta(ge=1, le=2**53 - 1)]
IdList = Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_PORTFOLIO_IDS)]
UserId = Annotated[
    Id | None,
    msgspec.Meta(description="Whose portfolios (admin keys only; default: the caller's)."),
]
RetentionDays = Annotated[int, msgspec.Meta(ge=1)]
AsOf = (
    Annotated[
        dt.datetime,
        msgspec.Meta(
            tz=True,
            description="The instant the task is for (the scheduler sets its fire's time).",
        ),
    ]
    | None
)


class InvalidTaskArguments(ValueError):
    """A task message's arguments break its contract; the task fails without running."""


class TaskContract(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every task's arguments. Subclasses set the class variables below."""

    name: ClassVar[str]
    queue: ClassVar[str]  # QUEUE_MARKET_DATA or QUEUE_ANALYTICS (a worker consumes both)
    # `POST /api/v1/tasks/<submit_path>`; None: not submitted over HTTP.
    submit_path: ClassVar[str | None] = None
    summary: ClassVar[str] = ""

    def kwargs(self) -> dict[str, Any]:
        """The Celery message's keyword arguments: JSON builtins, unset (None) fields left out.

        Also the canonical form the registry stores and hashes, so two requests that mean
        the same task (a default spelled out, say) are recognised as duplicates.
        """
        encoded: dict[str, Any] = msgspec.to_builtins(self)
        return {key: value for key, value in encoded.items() if value is not None}

    @classmethod
    def decode(cls, kwargs: dict[str, Any]) -> Self:
        """Rebuild the contract from a message's kwargs; `InvalidTaskArguments` if they break it."""
        try:
            return msgspec.convert(kwargs, cls, strict=False)
        except (msgspec.ValidationError, ValueError) as exc:
            raise InvalidTaskArguments(f"{cls.name}: {exc}") from None


def _normalise_symbols(symbols: list[str]) -> list[str]:
    """Upper-case and drop duplicates, keeping first-seen order."""
    return list(dict.fromkeys(symbol.upper() for symbol in symbols))


def _check_range(start: dt.date | None, end: dt.date | None) -> None:
    if start is not None and end is not None and start > end:
        raise ValueError("end: must be on or after start")


def _set(struct: msgspec.Struct, field: str, value: Any) -> None:
    # Normalising a frozen Struct in __post_init__ (msgspec's documented escape hatch).
    msgspec.structs.force_setattr(struct, field, value)


def _span_or_dates(task: Any, *, span: str, default: Any) -> None:
    """The window rule of `fetch_market_data` and `calculate_portfolio_performance`: a span
    (`period`, `days`) or `start` with an optional `end`, never both; the span's default when
    neither is given."""
    if getattr(task, span) is not None and (task.start is not None or task.end is not None):
        raise ValueError(f"{span}: give either {span} or start/end, not both")
    if task.start is None and task.end is not None:
        raise ValueError("start: required when end is given")
    _check_range(task.start, task.end)
    if getattr(task, span) is None and task.start is None:
        _set(task, span, default)


class FetchMarketData(TaskContract, frozen=True):
    """Daily history for many symbols, by `period` (default 1y) or by `start`/`end`."""

    name: ClassVar[str] = "fetch_market_data"
    queue: ClassVar[str] = QUEUE_MARKET_DATA
    submit_path: ClassVar[str | None] = "market-data"
    summary: ClassVar[str] = "Fetch daily history for many symbols"

    symbols: Symbols
    period: Period | None = None
    start: dt.date | None = None
    end: dt.date | None = None

    def __post_init__(self) -> None:
        _set(self, "symbols", _normalise_symbols(self.symbols))
        _span_or_dates(self, span="period", default="1y")


class FetchMarketDataChunk(TaskContract, frozen=True):
    """A helper of a chunked `fetch_market_data`: work through its job's unclaimed chunks."""

    name: ClassVar[str] = "fetch_market_data_chunk"
    queue: ClassVar[str] = QUEUE_MARKET_DATA

    job_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class UpdatePortfolioPrices(TaskContract, frozen=True):
    """Latest quotes for the symbols held in portfolios, or for the given symbols.

    No arguments: every symbol held in any portfolio (the scheduled jobs). With `user_id`
    (the API always sets it): that user's portfolios. With `portfolio_ids`: those.
    With `symbols`: those symbols (plus what `portfolio_ids` hold, when both are given).
    """

    name: ClassVar[str] = "update_portfolio_prices"
    queue: ClassVar[str] = QUEUE_MARKET_DATA
    submit_path: ClassVar[str | None] = "portfolio-prices"
    summary: ClassVar[str] = "Refresh latest prices"

    portfolio_ids: IdList | None = None
    symbols: Symbols | None = None
    user_id: UserId = None

    def __post_init__(self) -> None:
        if self.portfolio_ids is not None and self.symbols is not None:
            raise ValueError("symbols: give either portfolio_ids or symbols, not both")
        if self.symbols is not None:
            _set(self, "symbols", _normalise_symbols(self.symbols))
        if self.portfolio_ids is not None:
            _set(self, "portfolio_ids", sorted(set(self.portfolio_ids)))


class StoreSessionCloses(TaskContract, frozen=True):
    """The daily bar of the last completed session for every held symbol and the benchmark.

    The scheduler sends it after each close (16:05, or 13:05 on early-close days) with
    `as_of` set to the fire's instant; without it, the session last completed now.
    Snapshots that were valued with a stale price of a symbol it stores are rewritten.
    """

    name: ClassVar[str] = "store_session_closes"
    queue: ClassVar[str] = QUEUE_MARKET_DATA
    submit_path: ClassVar[str | None] = None
    summary: ClassVar[str] = "Store the session's closes"

    as_of: AsOf = None

    def session(self, *, now: dt.datetime, calendar: TradingCalendar = NYSE) -> dt.date:
        """The session whose bars to store."""
        return calendar.last_completed_session(self.as_of or now)


class FetchAssetInfo(TaskContract, frozen=True):
    """Reference data for one asset."""

    name: ClassVar[str] = "fetch_asset_info"
    queue: ClassVar[str] = QUEUE_MARKET_DATA
    submit_path: ClassVar[str | None] = "asset-info"
    summary: ClassVar[str] = "Fetch one asset's reference data"

    symbol: Symbol

    def __post_init__(self) -> None:
        _set(self, "symbol", self.symbol.upper())


class CalculatePortfolioPerformance(TaskContract, frozen=True):
    """Performance metrics over `days` (default 30) or `start`/`end`.

    Of one portfolio (`portfolio_id`), or all of `user_id`'s (the API sets the caller),
    or, with no arguments, of every portfolio.
    """

    name: ClassVar[str] = "calculate_portfolio_performance"
    queue: ClassVar[str] = QUEUE_ANALYTICS
    submit_path: ClassVar[str | None] = "portfolio-performance"
    summary: ClassVar[str] = "Calculate performance metrics"

    portfolio_id: Id | None = None
    user_id: UserId = None
    days: Days | None = None
    start: dt.date | None = None
    end: dt.date | None = None

    def __post_init__(self) -> None:
        _span_or_dates(self, span="days", default=DEFAULT_PERFORMANCE_DAYS)

    def window(self, *, today: dt.date) -> tuple[dt.date, dt.date]:
        """(base, end): the first and last trading days of the window."""
        return performance_window(days=self.days, start=self.start, end=self.end, today=today)


class CreatePortfolioSnapshot(TaskContract, frozen=True):
    """Snapshots on one `date`, or over a `start`/`end` backfill (at most ten years).

    No date: the last session completed at `as_of` (the scheduler sets its fire's instant,
    so a late run still values the right session), or else now: before today's close that
    is the previous session. No `portfolio_ids`: all of `user_id`'s portfolios (the API
    sets the caller), or every portfolio without one (the scheduled daily snapshot).
    """

    name: ClassVar[str] = "create_portfolio_snapshot"
    queue: ClassVar[str] = QUEUE_ANALYTICS
    submit_path: ClassVar[str | None] = "portfolio-snapshot"
    summary: ClassVar[str] = "Create or backfill snapshots"

    portfolio_ids: IdList | None = None
    user_id: UserId = None
    date: dt.date | None = None
    start: dt.date | None = None
    end: dt.date | None = None
    as_of: AsOf = None

    def __post_init__(self) -> None:
        if self.date is not None and (self.start is not None or self.end is not None):
            raise ValueError("date: give either date or start/end, not both")
        if self.as_of is not None and (self.date is not None or self.start is not None):
            raise ValueError("as_of: only without date or start/end")
        if (self.start is None) != (self.end is None):
            raise ValueError("start: start and end go together")
        _check_range(self.start, self.end)
        if self.start and self.end and (self.end - self.start).days > MAX_BACKFILL_DAYS:
            raise ValueError("start: a backfill covers at most ten years")
        if self.portfolio_ids is not None:
            _set(self, "portfolio_ids", sorted(set(self.portfolio_ids)))

    def valuation_dates(
        self, *, now: dt.datetime, calendar: TradingCalendar = NYSE
    ) -> list[dt.date]:
        """Trading days of the range, or the one date asked (a weekend date carries Friday),
        or the last session completed at `as_of` (else `now`)."""
        if self.start is not None and self.end is not None:
            return calendar.trading_days(self.start, self.end)
        if self.date is not None:
            return [self.date]
        return [calendar.last_completed_session(self.as_of or now)]


class GeneratePortfolioReport(TaskContract, frozen=True):
    """A report of one portfolio over `days`, as HTML or JSON."""

    name: ClassVar[str] = "generate_portfolio_report"
    queue: ClassVar[str] = QUEUE_ANALYTICS
    submit_path: ClassVar[str | None] = "portfolio-report"
    summary: ClassVar[str] = "Generate a report"

    portfolio_id: Id
    user_id: UserId = None
    days: Days = DEFAULT_REPORT_DAYS
    format: Literal["html", "json"] = "html"

    def window(self, *, today: dt.date) -> tuple[dt.date, dt.date]:
        """(base, end): the first and last trading days of the report."""
        return performance_window(days=self.days, start=None, end=None, today=today)


class Cleanup(TaskContract, frozen=True):
    """Prune old registry rows, idempotency keys, ledger fires and probe runs.

    No arguments: the retention settings (`CLEANUP_TASK_RETENTION_DAYS`,
    `SCHEDULER_LEDGER_RETENTION_DAYS`).
    """

    name: ClassVar[str] = "cleanup"
    queue: ClassVar[str] = QUEUE_ANALYTICS

    task_retention_days: RetentionDays | None = None
    ledger_retention_days: RetentionDays | None = None


class SchedulerProbe(TaskContract, frozen=True):
    """Count this task id's runs (scheduler failover tests and smoke checks)."""

    name: ClassVar[str] = "scheduler_probe"
    queue: ClassVar[str] = QUEUE_MARKET_DATA


class DemoFetch(TaskContract, frozen=True):
    """Fetch one symbol's chart and store its bars, then optionally hold (runtime tests)."""

    name: ClassVar[str] = "demo_fetch"
    queue: ClassVar[str] = QUEUE_MARKET_DATA

    symbol: Symbol
    period: Period = "1mo"
    hold_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0


CONTRACTS: tuple[type[TaskContract], ...] = (
    FetchMarketData,
    FetchMarketDataChunk,
    UpdatePortfolioPrices,
    StoreSessionCloses,
    FetchAssetInfo,
    CalculatePortfolioPerformance,
    CreatePortfolioSnapshot,
    GeneratePortfolioReport,
    Cleanup,
    SchedulerProbe,
    DemoFetch,
)


def contracts_by_name(
    contracts: tuple[type[TaskContract], ...] = CONTRACTS,
) -> dict[str, type[TaskContract]]:
    """Each contract by task name; a name used twice is a programming error."""
    named: dict[str, type[TaskContract]] = {}
    for contract in contracts:
        if contract.name in named:
            raise ValueError(f"task name {contract.name!r} is used by two contracts")
        named[contract.name] = contract
    return named


def performance_window(
    *, days: int | None, start: dt.date | None, end: dt.date | None, today: dt.date
) -> tuple[dt.date, dt.date]:
    """`days` counts calendar days back from the last trading day on or before `end` (today);
    the window's first trading day on or after that is the base."""
    last = NYSE.last_trading_day_on_or_before(min(end or today, today))
    first = start if start is not None else last - timedelta(days=days or DEFAULT_REPORT_DAYS)
    base = first if NYSE.is_trading_day(first) else NYSE.next_trading_day_after(first)
    return min(base, last), last
