"""`GET …/holdings` as a dashboard polls it: kept answers, checked against a version.

A valuation replays the whole ledger and prices every position, which cost an API process
several times a plain read. Its answer depends only on what it read (the portfolio, its
transactions, its symbols' currencies, splits, last closes and quotes, the calendar's
overrides and the FX rates it used), on the day it is valued for, and on the instant
before which prices count as stale (`pricing.stale_before`), which moves once a session.

So each API process keeps, per portfolio and day, the reads, the replayed ledger and the
encoded answer, checked in two steps:
- The exact version (`store.holdings_versions`, one statement that builds no JSON): every
  row version (`xmin`) the reads would see, or for closes and FX rates the transactions that
  wrote the symbols' bars (`price_writes`). The portfolio's row stands for its transactions
  (a trigger updates it with each write to them, migrations/0012). The ETag is this version
  with the stale-before instant, so a matching `If-None-Match` answers 304.
- Before it, the mark (`store.InputsMark`): the portfolio row's version and the writes to
  any symbol's inputs logged since the oldest transaction running when the kept answer was
  last found current (migrations/0014). A transaction committing later has an id at least
  that old, so while `store.inputs_unchanged` finds the same, nothing the answer read
  changed: one row and the top of one index. After a write anywhere, the next poll pays the
  exact check, and moves the mark on if the write was not to this portfolio's inputs.
While the answer is current and the stale-before instant has not moved, the kept bytes are
the answer.

Each version and mark is read in the statement that read its data (reads, their version and
mark; FX rates and theirs), so a kept answer is never labelled newer than what it was
computed from; the mark, read before the rates, can only be older than they are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import date, datetime

import asyncpg
import msgspec
from litestar import Response

from service.api.polled_reads import (
    VersionedCache,
    etag_matches,
    json_response,
    make_etag,
    not_modified,
)
from service.api.problems import ProblemException
from service.portfolio import store
from service.portfolio.fx import NO_RATES, FxRates
from service.portfolio.holdings import PriceInputs, current_holdings
from service.portfolio.positions import DayState, LedgerError, Split, Transaction, replay, state_on
from service.portfolio.pricing import freshness_reference, stale_before
from service.portfolio.valuation import Currencies

MAX_KEPT_HOLDINGS_BYTES = 16 * 2**20


@dataclass(frozen=True, slots=True, kw_only=True)
class ValuationInputs:
    """What a valuation read (as Postgres wrote it, and decoded) and the replayed ledger."""

    text: str
    reads: store.HoldingsReads
    state: DayState | None
    held: tuple[str, ...]
    pairs: tuple[str, ...]
    rates: FxRates


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptHoldings:
    """A valuation's inputs and its answer as sent, valued for `today` and `stale_from`,
    last found current at `mark`."""

    inputs: ValuationInputs
    versions: store.HoldingsVersions
    mark: store.InputsMark
    stale_from: datetime
    today: date
    etag: str
    body: bytes


def replay_stored(
    transactions: list[Transaction], splits: list[Split], *, base: str
) -> list[DayState]:
    """Replay accepted transactions; a split stored since they were accepted can make them
    impossible (a reverse split shrinking a position a later sell relies on): 409, not 500."""
    try:
        return replay(transactions, splits, base=base)
    except LedgerError as exc:
        raise ProblemException(
            status=409,
            detail=f"the recorded transactions no longer apply with the stored splits: {exc}; "
            "correct or delete the transaction",
        ) from None


async def holdings_response(
    connection: asyncpg.Connection,
    *,
    cache: VersionedCache[KeptHoldings],
    portfolio_id: int,
    owner_id: int,
    day: date,
    today: date,
    now: datetime,
    if_none_match: str | None,
) -> Response[bytes] | None:
    """The 200 or 304 answer for the owner's portfolio's holdings on `day`; None when the
    portfolio is not the owner's. One small round trip while nothing was written to what
    valuations read; one more after a write elsewhere."""
    key = (portfolio_id, day)
    with_quotes = day >= today
    kept = cache.peek(key)
    if kept is not None:
        kept_holdings = kept[1]
        unchanged = await store.inputs_unchanged(
            connection, portfolio_id=portfolio_id, owner_id=owner_id, mark=kept_holdings.mark
        )
        if unchanged is None:
            return None
        mark = kept_holdings.mark
        if not unchanged:
            checked = await store.holdings_versions(
                connection,
                portfolio_id=portfolio_id,
                owner_id=owner_id,
                with_quotes=with_quotes,
                held=kept_holdings.inputs.held,
                pairs=kept_holdings.inputs.pairs,
            )
            if checked is None:
                return None
            versions, mark = checked
            unchanged = versions == kept_holdings.versions
        if unchanged:
            stale_from = _stale_from(kept_holdings.inputs, day=day, now=now)
            current = kept_holdings
            if (current.stale_from, current.today) != (stale_from, today):
                current = _valued(
                    current.inputs,
                    portfolio_id,
                    current.versions,
                    mark,
                    day=day,
                    today=today,
                    now=now,
                )
            elif current.mark != mark:
                current = replace(current, mark=mark)
            if current is not kept_holdings:
                cache.put(key, version=current.versions, value=current, size=_size(current))
            return _answer(current, if_none_match)
    reads = await store.holdings_reads_text(
        connection,
        portfolio_id=portfolio_id,
        owner_id=owner_id,
        on_or_before=day,
        with_quotes=with_quotes,
    )
    if reads is None:
        return None
    if kept is not None and kept[1].inputs.text == reads.text:
        decoded, state = kept[1].inputs.reads, kept[1].inputs.state
    else:
        decoded = store.decode_holdings_reads(reads.text)
        splits = [s for items in decoded.splits.values() for s in items]
        state = state_on(replay_stored(decoded.transactions, splits, base=decoded.base), day)
    foreign = {tx.currency for tx in decoded.transactions if tx.currency} | set(
        decoded.currencies.values()
    )
    pairs = (
        tuple(store.candidate_pairs(foreign, [decoded.base])) if foreign - {decoded.base} else ()
    )
    rates, rates_version = NO_RATES, None
    if pairs:
        rates, rates_version = await store.load_versioned_rates(connection, pairs, on_or_before=day)
    versions = store.HoldingsVersions(reads=reads.version, rates=rates_version)
    held = tuple(sorted({tx.symbol for tx in decoded.transactions if tx.symbol is not None}))
    inputs = ValuationInputs(
        text=reads.text, reads=decoded, state=state, held=held, pairs=pairs, rates=rates
    )
    fresh = _valued(inputs, portfolio_id, versions, reads.mark, day=day, today=today, now=now)
    cache.put(key, version=versions, value=fresh, size=_size(fresh))
    return _answer(fresh, if_none_match)


def _stale_from(inputs: ValuationInputs, *, day: date, now: datetime) -> datetime:
    return stale_before(freshness_reference(as_of=day, now=now), inputs.reads.calendar)


def _valued(
    inputs: ValuationInputs,
    portfolio_id: int,
    versions: store.HoldingsVersions,
    mark: store.InputsMark,
    *,
    day: date,
    today: date,
    now: datetime,
) -> KeptHoldings:
    """`inputs` valued on `day` at `now`, encoded, with the ETag of the versions and the
    instant before which prices are stale, checked at `mark`."""
    reads = inputs.reads
    prices = PriceInputs(
        now=now,
        calendar=reads.calendar,
        closes=reads.closes,
        quotes=reads.quotes,
        splits=reads.splits,
        currencies=Currencies(base=reads.base, of_symbol=reads.currencies, rates=inputs.rates),
    )
    answer = current_holdings(portfolio_id, inputs.state, as_of=day, today=today, inputs=prices)
    stale_from = _stale_from(inputs, day=day, now=now)
    tag = hashlib.md5(  # noqa: S324 - an entity tag, not a secret
        f"{versions.reads}|{versions.rates}|{today}|{stale_from.isoformat()}".encode()
    ).hexdigest()
    return KeptHoldings(
        inputs=inputs,
        versions=versions,
        mark=mark,
        stale_from=stale_from,
        today=today,
        etag=make_etag("holdings", tag),
        body=msgspec.json.encode(answer),
    )


def _size(kept: KeptHoldings) -> int:
    # The text, its decoded objects (about as large again) and the body.
    return 2 * len(kept.inputs.text) + len(kept.body)


def _answer(kept: KeptHoldings, if_none_match: str | None) -> Response[bytes]:
    if etag_matches(if_none_match, kept.etag):
        return not_modified(etag=kept.etag)
    return json_response(kept.body, etag=kept.etag)
