"""Holdings as a dashboard polls them: after any change to what a valuation reads, or once
the clock passes a session's close, the next poll answers exactly what a process that
kept nothing computes; while nothing changed, the ETag holds and `If-None-Match` gets 304.

`holdings_response` runs on the suite's Postgres with an injected instant; each case
changes one input straight in the database, as a worker or another API process would.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

import asyncpg
import msgspec
import pytest
from litestar import Response

from service.api.holdings_reads import MAX_KEPT_HOLDINGS_BYTES, KeptHoldings, holdings_response
from service.api.polled_reads import VersionedCache
from service.portfolio import store
from tests.conftest import PINNED_START, PINNED_TODAY
from tests.portfolio_data import create_portfolio, new_owner_id, put_closes

TUESDAY, MONDAY = date(2026, 11, 17), date(2026, 11, 16)
NEXT_MORNING = PINNED_START + timedelta(hours=19)  # Thursday 10:00: Wednesday closed since
FAR_CLOSURE = date(2031, 1, 2)
# ISO 4217's code for testing: no other test stores its rates.
CURRENCY = "XTS"
PAIR = f"{CURRENCY}USD=X"


class Case:
    """A portfolio holding a USD stock, a stock quoted in XTS and cash, with its ids."""

    def __init__(self, pool: asyncpg.Pool, owner_id: int, portfolio_id: int, tag: str) -> None:
        self.pool, self.owner_id, self.portfolio_id = pool, owner_id, portfolio_id
        self.stock, self.foreign = f"HP{tag}", f"HPF{tag}"

    async def poll(
        self,
        cache: VersionedCache[KeptHoldings],
        *,
        now: datetime = PINNED_START,
        day: date = PINNED_TODAY,
        if_none_match: str | None = None,
    ) -> Response[bytes]:
        async with self.pool.acquire() as connection:
            response = await holdings_response(
                connection,
                cache=cache,
                portfolio_id=self.portfolio_id,
                owner_id=self.owner_id,
                day=day,
                today=PINNED_TODAY,
                now=now,
                if_none_match=if_none_match,
            )
        assert response is not None
        return response

    async def cold(self, *, now: datetime = PINNED_START, day: date = PINNED_TODAY) -> object:
        """What a process that kept nothing answers."""
        return body(await self.poll(_cache(), now=now, day=day))


def _cache() -> VersionedCache[KeptHoldings]:
    return VersionedCache[KeptHoldings](max_bytes=MAX_KEPT_HOLDINGS_BYTES)


def body(response: Response[bytes]) -> object:
    assert response.status_code == 200
    assert isinstance(response.content, bytes)
    return msgspec.json.decode(response.content)


@pytest.fixture
async def case(pool: asyncpg.Pool) -> Case:
    tag = uuid.uuid4().hex[:6].upper()
    owner_id = await new_owner_id(pool)
    portfolio_id = await create_portfolio(pool, owner_id=owner_id, name="polled")
    made = Case(pool, owner_id, portfolio_id, tag)
    await put_closes(pool, made.stock, {MONDAY: 20.0, TUESDAY: 21.0})
    await put_closes(pool, made.foreign, {TUESDAY: 50.0}, currency=CURRENCY)
    await put_closes(pool, PAIR, {MONDAY: 1.5, TUESDAY: 1.6}, currency="USD")
    await pool.executemany(
        "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price, amount,"
        " currency, fx_rate) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (portfolio_id, "DEPOSIT", MONDAY, None, None, None, Decimal(5000), None, None),
            (portfolio_id, "BUY", MONDAY, made.stock, Decimal(10), Decimal(20), None, None, None),
            (
                portfolio_id,
                "BUY",
                MONDAY,
                made.foreign,
                Decimal(4),
                Decimal(50),
                None,
                CURRENCY,
                Decimal("1.5"),
            ),
        ],
    )
    return made


Change = Callable[[Case], Awaitable[object]]


async def _new_close(c: Case) -> None:
    await put_closes(c.pool, c.stock, {PINNED_TODAY: 23.0})


async def _fresher_quote(c: Case) -> None:
    await _put_fresher_quote(c.pool, c.stock)


async def _put_fresher_quote(db: asyncpg.Pool | asyncpg.Connection, symbol: str) -> None:
    await db.execute(
        "INSERT INTO latest_quotes (symbol, price, market_time, source) "
        "VALUES ($1, 22.75, $2, 'test')",
        symbol,
        PINNED_START - timedelta(minutes=20),
    )


async def _edited_transaction(c: Case) -> None:
    await c.pool.execute(
        "UPDATE transactions SET quantity = 12 WHERE portfolio_id = $1 AND symbol = $2",
        c.portfolio_id,
        c.stock,
    )


async def _bought_another_symbol(c: Case) -> None:
    other = f"{c.stock}B"
    await put_closes(c.pool, other, {TUESDAY: 7.0})
    await c.pool.execute(
        "INSERT INTO transactions (portfolio_id, type, date, symbol, quantity, price) "
        "VALUES ($1, 'BUY', $2, $3, 3, 7)",
        c.portfolio_id,
        TUESDAY,
        other,
    )


async def _deleted_transaction(c: Case) -> None:
    await c.pool.execute(
        "DELETE FROM transactions WHERE portfolio_id = $1 AND symbol = $2",
        c.portfolio_id,
        c.foreign,
    )


async def _split(c: Case) -> None:
    await c.pool.execute(
        "INSERT INTO splits (symbol, date, numerator, denominator, source) "
        "VALUES ($1, $2, 2, 1, 'test')",
        c.stock,
        TUESDAY,
    )


async def _rate_corrected(c: Case) -> None:
    await put_closes(c.pool, PAIR, {TUESDAY: 1.7}, currency="USD")


async def _asset_currency(c: Case) -> None:
    await c.pool.execute("UPDATE assets SET currency = 'USD' WHERE symbol = $1", c.foreign)


async def _base_currency(c: Case) -> None:
    await c.pool.execute(
        "UPDATE portfolios SET base_currency = $2 WHERE id = $1", c.portfolio_id, CURRENCY
    )


async def _closure(c: Case) -> None:
    # A closure far ahead changes nothing a valuation shows, but it is an input: answered
    # like a cold process, which is the check.
    await c.pool.execute(
        "INSERT INTO market_closures (day, reason) VALUES ($1, 'holdings poll test') "
        "ON CONFLICT DO NOTHING",
        FAR_CLOSURE,
    )


@pytest.mark.parametrize(
    "change",
    [
        _new_close,
        _fresher_quote,
        _edited_transaction,
        _bought_another_symbol,
        _deleted_transaction,
        _split,
        _rate_corrected,
        _asset_currency,
        _base_currency,
        _closure,
    ],
)
async def test_every_input_change_shows_on_the_next_poll(
    case: Case, pool: asyncpg.Pool, change: Change
) -> None:
    """Two polls agree (the same ETag, 304 for it); after one input changes, the next poll
    answers what a process that kept nothing answers, under a new ETag."""
    cache = _cache()
    first = await case.poll(cache)
    again = await case.poll(cache)
    assert body(again) == body(first) == await case.cold()
    etag = first.headers["ETag"]
    assert again.headers["ETag"] == etag
    assert (await case.poll(cache, if_none_match=etag)).status_code == 304
    try:
        await change(case)
        after = await case.poll(cache, if_none_match=etag)
        assert body(after) == await case.cold()
        if change is not _closure:
            assert body(after) != body(first)
        assert after.headers["ETag"] != etag
    finally:
        await pool.execute("DELETE FROM market_closures WHERE day = $1", FAR_CLOSURE)


async def test_a_completed_session_turns_a_kept_price_stale(case: Case) -> None:
    """Tuesday's close is current on Wednesday afternoon; polled again on Thursday morning
    (Wednesday's session has completed, nothing was stored), the same kept inputs answer
    with it stale, as a cold process does, under a new ETag."""
    cache = _cache()
    wednesday = await case.poll(cache)
    assert body(wednesday)["stale_prices"] == []  # type: ignore[index]
    thursday = await case.poll(cache, now=NEXT_MORNING, if_none_match=wednesday.headers["ETag"])
    shown = body(thursday)
    assert shown == await case.cold(now=NEXT_MORNING)
    assert shown["stale_prices"] == sorted([case.stock, case.foreign])  # type: ignore[index]
    assert thursday.headers["ETag"] != wednesday.headers["ETag"]


async def test_another_owner_gets_nothing_from_a_kept_answer(
    case: Case, pool: asyncpg.Pool
) -> None:
    """A kept answer is never served to someone who does not own the portfolio."""
    cache = _cache()
    await case.poll(cache)
    stranger = await new_owner_id(pool)
    async with pool.acquire() as connection:
        found = await holdings_response(
            connection,
            cache=cache,
            portfolio_id=case.portfolio_id,
            owner_id=stranger,
            day=PINNED_TODAY,
            today=PINNED_TODAY,
            now=PINNED_START,
            if_none_match=None,
        )
    assert found is None


@pytest.mark.parametrize("with_quotes", [True, False])
async def test_the_version_check_agrees_with_the_reads(case: Case, with_quotes: bool) -> None:
    """The version a poll checks equals the one read with the inputs (reads and FX rates),
    so an unchanged portfolio is answered from what was kept, not read again."""
    await _split(case)
    await _fresher_quote(case)
    async with case.pool.acquire() as connection:
        reads = await store.holdings_reads_text(
            connection,
            portfolio_id=case.portfolio_id,
            owner_id=case.owner_id,
            on_or_before=PINNED_TODAY,
            with_quotes=with_quotes,
        )
        assert reads is not None
        _, rates_version = await store.load_versioned_rates(
            connection, [PAIR], on_or_before=PINNED_TODAY
        )
        checked = await store.holdings_versions(
            connection,
            portfolio_id=case.portfolio_id,
            owner_id=case.owner_id,
            with_quotes=with_quotes,
            held=sorted([case.stock, case.foreign]),
            pairs=[PAIR],
        )
    assert checked is not None
    assert checked[0] == store.HoldingsVersions(reads=reads.version, rates=rates_version)


async def test_a_write_in_flight_when_kept_shows_once_committed(
    case: Case, pool: asyncpg.Pool
) -> None:
    """A quote written by a transaction that began before a kept answer was computed, and
    committed after a later writer, shows on the next poll (the check starts from the
    oldest transaction running when the inputs were read, not the newest)."""
    cache = _cache()
    async with pool.acquire() as slow:
        transaction = slow.transaction()
        await transaction.start()
        try:
            await _put_fresher_quote(slow, case.stock)
            await put_closes(pool, f"{case.stock}U", {TUESDAY: 3.0})
            before = await case.poll(cache)
            assert body(before) == await case.cold()
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()
    after = await case.poll(cache, if_none_match=before.headers["ETag"])
    assert body(after) == await case.cold()
    assert body(after) != body(before)


async def test_a_write_to_other_inputs_keeps_the_etag(case: Case, pool: asyncpg.Pool) -> None:
    """A close stored for a symbol the portfolio does not hold changes nothing it shows: the
    next poll still answers 304, and the poll after it is checked from the new write on."""
    cache = _cache()
    first = await case.poll(cache)
    kept = cache.peek((case.portfolio_id, PINNED_TODAY))
    assert kept is not None
    await put_closes(pool, f"{case.stock}X", {TUESDAY: 9.0})
    assert (await case.poll(cache, if_none_match=first.headers["ETag"])).status_code == 304
    rechecked = cache.peek((case.portfolio_id, PINNED_TODAY))
    assert rechecked is not None
    assert rechecked[1].mark != kept[1].mark
    assert rechecked[1].body == kept[1].body
    async with pool.acquire() as connection:
        assert await store.inputs_unchanged(
            connection,
            portfolio_id=case.portfolio_id,
            owner_id=case.owner_id,
            mark=rechecked[1].mark,
        )
