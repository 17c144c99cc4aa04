"""Reads a dashboard polls: prices built by Postgres, and conditional GETs by ETag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.api.polled_reads import VersionedCache, etag_matches
from service.core.users import IssuedKey
from tests.api_client import Api
from tests.portfolio_data import put_closes

NewUser = Callable[..., Awaitable[IssuedKey]]


class TestEtagMatches:
    @pytest.mark.parametrize(
        ("header", "matches"),
        [
            (None, False),
            ("", False),
            ('"prices-abc"', True),
            ('W/"prices-abc"', True),
            ('"other", "prices-abc"', True),
            ('"prices-ab"', False),
            ("prices-abc", False),
            ("*", True),
        ],
    )
    def test_weak_comparison_over_the_listed_tags(self, header: str | None, matches: bool) -> None:
        """`If-None-Match` matches when any listed tag equals ours, ignoring `W/`, or is `*`."""
        assert etag_matches(header, '"prices-abc"') is matches


class TestVersionedCache:
    def test_a_body_is_served_only_at_its_version(self) -> None:
        """A kept body comes back for the version it was built at and for no other."""
        cache = VersionedCache[bytes](max_bytes=100)
        cache.put(("prices", "A"), version="v1", value=b"[1]", size=3)
        assert cache.get(("prices", "A"), version="v1") == b"[1]"
        assert cache.get(("prices", "A"), version="v2") is None
        assert cache.get(("prices", "B"), version="v1") is None
        cache.put(("prices", "A"), version="v2", value=b"[2]", size=3)
        assert cache.get(("prices", "A"), version="v1") is None
        assert cache.get(("prices", "A"), version="v2") == b"[2]"

    def test_bounded_by_bytes_least_recently_used_first(self) -> None:
        """Past `max_bytes` the least recently used bodies go; a body larger than the whole
        budget is not kept at all."""
        cache = VersionedCache[bytes](max_bytes=10)
        cache.put("a", version="1", value=b"aaaa", size=4)
        cache.put("b", version="1", value=b"bbbb", size=4)
        assert cache.get("a", version="1") == b"aaaa"
        cache.put("c", version="1", value=b"cccc", size=4)
        assert cache.get("b", version="1") is None
        assert (cache.get("a", version="1"), cache.get("c", version="1")) == (b"aaaa", b"cccc")
        cache.put("huge", version="1", value=b"x" * 11, size=11)
        assert not cache.knows("huge")
        assert len(cache) == 2


async def _stored_prices(pool: asyncpg.Pool, symbol: str) -> list[dict[str, Any]]:
    """The bars as the handler shaped them before Postgres built the JSON."""
    rows = await pool.fetch(
        "SELECT date, open, high, low, close, adj_close, volume, source FROM daily_prices "
        "WHERE symbol = $1 ORDER BY date",
        symbol,
    )

    def num(value: Any) -> float | None:
        return None if value is None else float(value)

    return [
        {
            "date": r["date"].isoformat(),
            "open": num(r["open"]),
            "high": num(r["high"]),
            "low": num(r["low"]),
            "close": float(r["close"]),
            "adj_close": num(r["adj_close"]),
            "volume": r["volume"],
            "source": r["source"],
        }
        for r in rows
    ]


class TestPricesApi:
    async def test_values_as_before_and_304_until_a_bar_changes(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser, pool: asyncpg.Pool
    ) -> None:
        """Prices carry the stored values (nulls included) in date order with the asset's
        currency, and a poll with the ETag gets an empty 304 until a bar of the symbol is
        written (another symbol's leave it), then the bars as stored."""
        symbol = "POLLPX1"
        first = date(2024, 3, 1)
        await put_closes(
            pool, symbol, {first + timedelta(days=i): 100 + i * 0.37 for i in range(30)}
        )
        await pool.execute(
            "UPDATE daily_prices SET open = 99.5, high = 101.25, low = 98, volume = 1234567 "
            "WHERE symbol = $1 AND date = $2",
            symbol,
            first,
        )
        api = Api(http, api_url, (await new_user()).api_key)
        path = f"/api/v1/assets/{symbol.lower()}/prices"
        status, body, headers = await api.request("GET", path)
        assert status == 200
        prices = await _stored_prices(pool, symbol)
        assert body == {"symbol": symbol, "currency": "USD", "prices": prices}
        assert body["prices"][0]["volume"] == 1234567
        assert all(isinstance(p["close"], float) for p in body["prices"])
        etag = headers["ETag"]
        status, body, _ = await api.request("GET", path, headers={"If-None-Match": etag})
        assert (status, body) == (304, None)
        ranged = f"{path}?start={first}&end={first + timedelta(days=9)}"
        _, part, ranged_headers = await api.request("GET", ranged)
        assert len(part["prices"]) == 10
        assert ranged_headers["ETag"] != etag
        await put_closes(pool, "POLLPXOTHER", {first: 3.0})  # another symbol: tags stay
        status, _, _ = await api.request(
            "GET", ranged, headers={"If-None-Match": ranged_headers["ETag"]}
        )
        assert status == 304
        await put_closes(pool, symbol, {first + timedelta(days=29): 1.5})
        status, again, _ = await api.request(
            "GET", ranged, headers={"If-None-Match": ranged_headers["ETag"]}
        )
        assert (status, again) == (200, part)  # a write outside the range: same bars
        status, body, headers = await api.request("GET", path, headers={"If-None-Match": etag})
        assert status == 200
        assert body["prices"][-1]["close"] == 1.5
        assert headers["ETag"] != etag
        await put_closes(pool, symbol, {first + timedelta(days=30): 2.0})
        status, body, _ = await api.request("GET", path, headers={"If-None-Match": headers["ETag"]})
        assert (status, len(body["prices"])) == (200, 31)

    async def test_a_kept_body_never_outlives_a_change(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser, pool: asyncpg.Pool
    ) -> None:
        """Polls without `If-None-Match` get the bars as stored now: after a bar is rewritten
        the next poll shows it, though the API kept the earlier body; so does a change of the
        asset's currency, with `If-None-Match` too."""
        symbol = "POLLPX2"
        first = date(2024, 5, 1)
        await put_closes(pool, symbol, {first + timedelta(days=i): 50 + i for i in range(5)})
        api = Api(http, api_url, (await new_user()).api_key)
        path = f"/api/v1/assets/{symbol}/prices"
        for _ in range(3):
            status, body, headers = await api.request("GET", path)
            assert (status, body["prices"][2]["close"]) == (200, 52.0)
        for close in (7.25, 8.5):
            await put_closes(pool, symbol, {first + timedelta(days=2): close})
            status, body, changed = await api.request("GET", path)
            assert status == 200
            assert body == {
                "symbol": symbol,
                "currency": "USD",
                "prices": await _stored_prices(pool, symbol),
            }
            assert body["prices"][2]["close"] == close
            assert changed["ETag"] != headers["ETag"]
            headers = changed
        await pool.execute("UPDATE assets SET currency = 'EUR' WHERE symbol = $1", symbol)
        status, body, changed = await api.request(
            "GET", path, headers={"If-None-Match": headers["ETag"]}
        )
        assert (status, body["currency"]) == (200, "EUR")

    async def test_unknown_symbol_is_404_even_with_an_etag(
        self, api_url: str, http: aiohttp.ClientSession, new_user: NewUser
    ) -> None:
        """A symbol findash never stored answers a 404 problem, whatever `If-None-Match` says."""
        api = Api(http, api_url, (await new_user()).api_key)
        status, problem, _ = await api.request(
            "GET", "/api/v1/assets/ZZNOPE/prices", headers={"If-None-Match": "*"}
        )
        assert status == 404
        assert problem["detail"] == "unknown symbol ZZNOPE"
