"""Pure market-data core: planning, symbol spelling, retry and breaker decisions, price
adjustments and each provider's conversion to findash's price semantics."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from service.core.rates import parse_rate
from service.core.settings import Settings
from service.core.trading_calendar import NYSE
from workers.market_data.backoff import backoff_delay, next_delay
from workers.market_data.circuit_breaker import BreakerState, CircuitBreaker
from workers.market_data.failover import summary_kind
from workers.market_data.plan import (
    StoredRange,
    Window,
    chunk_size_for,
    chunked,
    helper_count,
    incremental_window,
    needs_refetch,
    requested_window,
)
from workers.market_data.providers import polygon, tiingo, yahoo
from workers.market_data.providers.adjust import dividend_adjusted, split_factor_after
from workers.market_data.providers.base import ErrorKind, ProviderError
from workers.market_data.providers.symbols import provider_symbol
from workers.market_data.providers.transport import Reply, classify_status, parse_retry_after
from workers.market_data.simulated_exchange import polygon as sim_polygon
from workers.market_data.simulated_exchange import tiingo as sim_tiingo
from workers.market_data.simulated_exchange import yahoo as sim_yahoo
from workers.market_data.simulated_exchange.series import build_series, symbol_seed
from workers.market_data.types import Bar, Dividend, History, Split

TODAY = date(2026, 11, 20)
D = date.fromisoformat


def _reply(status: int, body: bytes) -> Reply:
    return Reply(status=status, body=body, headers=CIMultiDictProxy(CIMultiDict()))


def _bar(day: str, close: float) -> Bar:
    return Bar(
        date=D(day), open=close, high=close, low=close, close=close, adj_close=close, volume=1
    )


class TestRequestedWindow:
    @pytest.mark.parametrize(
        ("period", "start", "end", "expected"),
        [
            (None, None, None, Window(TODAY - timedelta(days=366), TODAY)),
            ("1mo", None, None, Window(TODAY - timedelta(days=31), TODAY)),
            ("max", None, None, Window(date(1970, 1, 1), TODAY)),
            (None, D("2024-01-02"), D("2024-03-01"), Window(D("2024-01-02"), D("2024-03-01"))),
            (None, D("2024-01-02"), None, Window(D("2024-01-02"), TODAY)),
            (None, D("2026-01-02"), D("2027-01-01"), Window(D("2026-01-02"), TODAY)),
        ],
    )
    def test_windows(
        self, period: str | None, start: date | None, end: date | None, expected: Window
    ) -> None:
        """Explicit dates win over the period, the default period is 1y, and no window
        reaches past today."""
        assert requested_window(period=period, start=start, end=end, today=TODAY) == expected

    @pytest.mark.parametrize(
        ("period", "start", "end"), [("7y", None, None), (None, D("2026-02-01"), D("2026-01-01"))]
    )
    def test_invalid_requests(
        self, period: str | None, start: date | None, end: date | None
    ) -> None:
        """An unknown period or a start after the end is rejected."""
        with pytest.raises(ValueError, match=r"period|start"):
            requested_window(period=period, start=start, end=end, today=TODAY)


class TestIncrementalWindow:
    WANTED = Window(D("2025-11-20"), D("2026-11-20"))

    @pytest.mark.parametrize(
        ("stored", "expected"),
        [
            (None, WANTED),
            (
                StoredRange(D("2025-06-01"), D("2026-11-10")),
                Window(D("2026-11-05"), D("2026-11-20")),
            ),
            (
                StoredRange(D("2025-11-20"), D("2026-11-20")),
                Window(D("2026-11-15"), D("2026-11-20")),
            ),
            # stored history starts after the wanted start: fetch everything
            (StoredRange(D("2026-01-05"), D("2026-11-10")), WANTED),
            # stored history ends before the wanted start: nothing to extend
            (StoredRange(D("2020-01-02"), D("2024-01-02")), WANTED),
            # the overlap never reaches before the wanted start
            (StoredRange(D("2025-01-02"), D("2025-11-21")), WANTED),
        ],
    )
    def test_resumes_from_last_stored_date_minus_overlap(
        self, stored: StoredRange | None, expected: Window
    ) -> None:
        """A refresh starts five days before the last stored bar when history covers the start."""
        assert incremental_window(self.WANTED, stored, overlap_days=5, calendar=NYSE) == expected


class TestNeedsRefetch:
    WANTED = Window(D("2025-01-02"), D("2026-11-20"))
    INCREMENTAL = Window(D("2026-11-10"), D("2026-11-20"))

    def _history(self, *, splits: list[str] = (), dividends: list[str] = ()) -> History:  # type: ignore[assignment]
        return History(
            symbol="X",
            bars=[],
            splits=[Split(date=D(s), numerator=2, denominator=1) for s in splits],
            dividends=[Dividend(date=D(d), amount=0.5) for d in dividends],
        )

    @pytest.mark.parametrize(
        ("splits", "dividends", "known_splits", "known_dividends", "window", "expected"),
        [
            (["2026-11-12"], [], [], [], INCREMENTAL, True),
            ([], ["2026-11-12"], [], [], INCREMENTAL, True),
            (["2026-11-12"], [], ["2026-11-12"], [], INCREMENTAL, False),
            ([], ["2026-11-12"], [], ["2026-11-12"], INCREMENTAL, False),
            ([], [], [], [], INCREMENTAL, False),
            (["2026-11-12"], [], [], [], WANTED, False),  # already a full fetch
        ],
    )
    def test_new_corporate_action_in_incremental_fetch(
        self,
        splits: list[str],
        dividends: list[str],
        known_splits: list[str],
        known_dividends: list[str],
        window: Window,
        expected: bool,
    ) -> None:
        """Only an incremental fetch that shows an unseen split or dividend asks for a refetch."""
        history = self._history(splits=splits, dividends=dividends)
        assert (
            needs_refetch(
                history,
                window=window,
                wanted=self.WANTED,
                known_splits={D(s) for s in known_splits},
                known_dividends={D(d) for d in known_dividends},
            )
            is expected
        )


class TestChunking:
    @pytest.mark.parametrize(
        ("count", "size", "sizes"),
        [(0, 3, []), (1, 3, [1]), (3, 3, [3]), (7, 3, [3, 3, 1]), (2000, 250, [250] * 8)],
    )
    def test_chunk_sizes(self, count: int, size: int, sizes: list[int]) -> None:
        """Symbols are split into consecutive chunks of at most `size`, order kept."""
        symbols = [f"S{i}" for i in range(count)]
        chunks = chunked(symbols, size)
        assert [len(c) for c in chunks] == sizes
        assert [s for c in chunks for s in c] == symbols

    @pytest.mark.parametrize(
        ("provider", "rate", "limit", "expected"),
        [
            ("yahoo", "5000/second", 1800, 250),  # fast provider: the configured size
            ("yahoo", "10/second", 1800, 250),
            ("yahoo", "1/second", 1800, 250),
            ("yahoo", "1/second", 400, 100),  # 100 symbols x 1 s = a quarter of 400 s
            ("polygon", "5/minute", 1800, 12),  # three requests a symbol at 12 s each
            ("tiingo", "50/hour", 1800, 6),
            ("tiingo", "1/day", 1800, 1),
        ],
    )
    def test_chunk_size_fits_the_time_limit(
        self, provider: str, rate: str, limit: float, expected: int
    ) -> None:
        """A chunk paced by its provider's rate needs at most a quarter of the time limit."""
        assert (
            chunk_size_for(
                configured=250,
                provider=provider,
                request_interval=parse_rate(rate).interval,
                time_limit=limit,
            )
            == expected
        )

    @pytest.mark.parametrize(
        ("chunks", "max_helpers", "expected"), [(1, 4, 0), (2, 4, 1), (8, 4, 4), (8, 0, 0)]
    )
    def test_helper_count(self, chunks: int, max_helpers: int, expected: int) -> None:
        """The parent works too, so a job never gets more helpers than chunks minus one."""
        assert helper_count(chunks, max_helpers=max_helpers) == expected


class TestProviderSymbol:
    @pytest.mark.parametrize(
        ("provider", "symbol", "expected"),
        [
            ("yahoo", "BRK.B", "BRK-B"),
            ("tiingo", "BRK.B", "BRK-B"),
            ("polygon", "BRK.B", "BRK.B"),
            ("yahoo", "^GSPC", "^GSPC"),
            ("yahoo", "AAPL", "AAPL"),
            ("yahoo", "SAP.DE", "SAP.DE"),
            ("yahoo", "VOD.L", "VOD.L"),
            ("yahoo", "EURUSD=X", "EURUSD=X"),
            ("polygon", "EURUSD=X", "C:EURUSD"),
            ("tiingo", "EURUSD=X", "eurusd"),
        ],
    )
    def test_spelling(self, provider: str, symbol: str, expected: str) -> None:
        """Share classes are spelled with a dash on Yahoo and Tiingo, with a dot on Polygon;
        Yahoo's exchange suffixes keep their dot; FX pairs take each provider's spelling."""
        assert provider_symbol(provider, symbol) == expected


class TestRetryAfter:
    NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, None),
            ("", None),
            ("7", 7.0),
            ("100000", 300.0),
            ("Fri, 20 Nov 2026 12:00:30 GMT", 30.0),
            ("Fri, 20 Nov 2026 11:00:00 GMT", 0.0),
            ("soon", None),
        ],
    )
    def test_parse(self, header: str | None, expected: float | None) -> None:
        """Delta-seconds and HTTP-dates are understood and capped; garbage is ignored."""
        assert parse_retry_after(header, now=self.NOW) == expected

    @pytest.mark.parametrize(
        ("status", "raises"), [(200, False), (404, False), (429, True), (503, True)]
    )
    def test_classify_status(self, status: int, raises: bool) -> None:
        """429 and 5xx are transient errors; other statuses are left to the adapter."""
        if raises:
            with pytest.raises(ProviderError) as caught:
                classify_status(status, provider="p", retry_after=None)
            assert caught.value.kind is ErrorKind.TRANSIENT
            assert caught.value.throttled is (status == 429)
        else:
            classify_status(status, provider="p", retry_after=None)


class TestBackoff:
    def test_delays_grow_and_are_capped(self) -> None:
        """Full jitter stays within [0, min(cap, base·2ⁿ)]."""
        rng = random.Random(1)
        for attempt in range(12):
            delay = backoff_delay(attempt, rng=rng, base=0.25, cap=8.0)
            assert 0 <= delay <= min(8.0, 0.25 * 2**attempt)

    @pytest.mark.parametrize(
        ("kind", "retry_after", "elapsed", "budget", "expect_retry"),
        [
            (ErrorKind.TRANSIENT, None, 0.0, 30.0, True),
            (ErrorKind.MALFORMED, None, 0.0, 30.0, True),
            (ErrorKind.NOT_FOUND, None, 0.0, 30.0, False),
            (ErrorKind.PERMANENT, None, 0.0, 30.0, False),
            (ErrorKind.UNAVAILABLE, None, 0.0, 30.0, False),
            (ErrorKind.TRANSIENT, 60.0, 0.0, 30.0, False),  # Retry-After past the budget
            (ErrorKind.TRANSIENT, None, 30.0, 30.0, False),  # budget spent
        ],
    )
    def test_next_delay(
        self,
        kind: ErrorKind,
        retry_after: float | None,
        elapsed: float,
        budget: float,
        expect_retry: bool,
    ) -> None:
        """Only retryable errors are retried, never past the per-symbol time budget."""
        error = ProviderError(kind, "x", retry_after=retry_after)
        delay = next_delay(error, attempt=0, elapsed=elapsed, budget=budget, rng=random.Random(0))
        assert (delay is not None) is expect_retry

    def test_retry_after_is_a_floor(self) -> None:
        """A server's Retry-After is waited at least."""
        error = ProviderError(ErrorKind.TRANSIENT, "x", retry_after=2.0)
        delay = next_delay(error, attempt=0, elapsed=0, budget=30, rng=random.Random(0))
        assert delay is not None
        assert delay >= 2.0


class TestCircuitBreaker:
    def test_opens_after_threshold_and_recovers(self) -> None:
        """Closed until `threshold` failures, open for `cooldown`, then one half-open trial
        whose success closes it."""
        breaker = CircuitBreaker(threshold=3, cooldown=10)
        for t in (0.0, 1.0):
            breaker.record_failure(t)
            assert breaker.state(t) is BreakerState.CLOSED
        breaker.record_failure(2.0)
        assert breaker.state(2.0) is BreakerState.OPEN
        assert not breaker.allow(5.0)
        assert breaker.state(12.0) is BreakerState.HALF_OPEN
        assert breaker.allow(12.0)
        assert not breaker.allow(12.1)  # one trial at a time
        breaker.record_success()
        assert breaker.state(12.2) is BreakerState.CLOSED
        assert breaker.allow(12.2)

    def test_failed_trial_reopens(self) -> None:
        """A failing half-open trial opens the breaker for another cooldown."""
        breaker = CircuitBreaker(threshold=1, cooldown=10)
        breaker.record_failure(0.0)
        assert breaker.allow(10.0)
        breaker.record_failure(10.0)
        assert breaker.state(15.0) is BreakerState.OPEN
        assert breaker.state(20.0) is BreakerState.HALF_OPEN

    def test_abandoned_trial_frees_the_slot(self) -> None:
        """A cancelled trial does not leave the breaker stuck half-open."""
        breaker = CircuitBreaker(threshold=1, cooldown=1)
        breaker.record_failure(0.0)
        assert breaker.allow(1.0)
        breaker.abandon()
        assert breaker.allow(1.0)


class TestSummaryKind:
    @pytest.mark.parametrize(
        ("kinds", "expected"),
        [
            ([ErrorKind.NOT_FOUND], ErrorKind.NOT_FOUND),
            ([ErrorKind.NOT_FOUND, ErrorKind.NOT_FOUND], ErrorKind.NOT_FOUND),
            ([ErrorKind.NOT_FOUND, ErrorKind.TRANSIENT], ErrorKind.TRANSIENT),
            ([ErrorKind.UNAVAILABLE], ErrorKind.TRANSIENT),
            ([ErrorKind.PERMANENT, ErrorKind.NOT_FOUND], ErrorKind.PERMANENT),
        ],
    )
    def test_kinds(self, kinds: list[ErrorKind], expected: ErrorKind) -> None:
        """A symbol is unknown only when every provider said so; anything retryable wins."""
        assert summary_kind([ProviderError(k, "x") for k in kinds]) is expected


class TestAdjustments:
    def test_dividend_adjusted_close(self) -> None:
        """Bars before an ex-date are scaled by (1 - amount / previous close)."""
        bars = [_bar("2026-01-05", 100.0), _bar("2026-01-06", 100.0), _bar("2026-01-07", 50.0)]
        adjusted = dividend_adjusted(bars, [Dividend(date=D("2026-01-07"), amount=1.0)])
        assert [b.adj_close for b in adjusted] == [99.0, 99.0, 50.0]
        assert [b.close for b in adjusted] == [100.0, 100.0, 50.0]

    def test_unpriceable_dividend_is_ignored(self) -> None:
        """A dividend before the first bar cannot be priced and changes nothing."""
        bars = [_bar("2026-01-05", 100.0)]
        adjusted = dividend_adjusted(bars, [Dividend(date=D("2026-01-02"), amount=1.0)])
        assert adjusted[0].adj_close == 100.0

    @pytest.mark.parametrize(
        ("day", "expected"), [("2026-01-01", 6.0), ("2026-03-01", 3.0), ("2026-06-01", 1.0)]
    )
    def test_split_factor_after(self, day: str, expected: float) -> None:
        """The product of the ratios of later splits only."""
        splits = [
            Split(date=D("2026-02-01"), numerator=2, denominator=1),
            Split(date=D("2026-05-01"), numerator=3, denominator=1),
        ]
        assert split_factor_after(D(day), splits) == expected


def _symbol_with_split_and_dividends() -> str:
    for i in range(5000):
        symbol = f"SEM{i}"
        seed = symbol_seed(symbol)
        if seed % 11 or seed % 3:
            continue
        splits = build_series(symbol, TODAY).splits
        if splits and date(2005, 1, 1) < min(splits) < TODAY - timedelta(days=400):
            return symbol
    raise AssertionError("no such symbol")


class TestPriceSemantics:
    """Every adapter stores close split-adjusted and adj_close split- and dividend-adjusted."""

    SYMBOL = _symbol_with_split_and_dividends()

    def _window(self) -> tuple[date, date, date]:
        series = build_series(self.SYMBOL, TODAY)
        (split_day,) = series.splits
        return split_day - timedelta(days=200), split_day + timedelta(days=200), split_day

    def _yahoo(self, start: date, end: date) -> History:
        body = msgspec.json.encode(
            sim_yahoo.chart_payload(self.SYMBOL, start, TODAY, live_bar=False)
        )
        chart = yahoo.decode_chart(_reply(200, body))
        return yahoo.chart_history(chart, symbol=self.SYMBOL, start=start, end=end)

    def _polygon(self, start: date, end: date, *, adjusted: bool = True) -> History:
        rows = sim_polygon.aggs_rows(self.SYMBOL, start, TODAY, adjusted=adjusted, today=TODAY)
        return polygon.history_from_bodies(
            self.SYMBOL,
            aggs=msgspec.json.encode(
                sim_polygon.aggs_payload(self.SYMBOL, rows, adjusted=adjusted, next_url=None)
            ),
            dividends=msgspec.json.encode(
                sim_polygon.dividends_payload(self.SYMBOL, start, today=TODAY)
            ),
            splits=msgspec.json.encode(sim_polygon.splits_payload(self.SYMBOL, start, today=TODAY)),
            start=start,
            end=end,
        )

    def _tiingo(self, start: date, end: date) -> History:
        body = msgspec.json.encode(
            sim_tiingo.prices_payload(self.SYMBOL, start, TODAY, today=TODAY)
        )
        return tiingo.history_from_body(self.SYMBOL, body, start=start, end=end)

    def test_providers_agree_across_a_split(self) -> None:
        """Yahoo, Polygon and Tiingo payloads of one series give the same close and adj_close
        on every day around a 2:1 split, and report the split and the dividends."""
        start, end, split_day = self._window()
        reference = self._yahoo(start, end)
        assert len(reference.bars) > 200
        assert [s.date for s in reference.splits] == [split_day]
        assert reference.dividends
        before = next(b for b in reference.bars if b.date < split_day)
        assert before.adj_close is not None
        assert before.adj_close < before.close  # dividends after it lower adj_close
        for other in (self._polygon(start, end), self._tiingo(start, end)):
            assert [b.date for b in other.bars] == [b.date for b in reference.bars]
            for mine, theirs in zip(other.bars, reference.bars, strict=True):
                assert mine.close == pytest.approx(theirs.close, rel=2e-4)
                assert mine.adj_close == pytest.approx(theirs.adj_close, rel=2e-4)
            assert [(s.date, s.numerator / s.denominator) for s in other.splits] == [
                (split_day, 2.0)
            ]
            assert [d.date for d in other.dividends] == [d.date for d in reference.dividends]
            for mine_d, theirs_d in zip(other.dividends, reference.dividends, strict=True):
                assert mine_d.amount == pytest.approx(theirs_d.amount, rel=1e-3)

    def test_tiingo_raw_close_is_not_what_is_stored(self) -> None:
        """Tiingo's raw pre-split close is twice the stored split-adjusted close."""
        start, end, split_day = self._window()
        raw = sim_tiingo.prices_payload(self.SYMBOL, start, start + timedelta(days=10), today=TODAY)
        history = self._tiingo(start, end)
        first = history.bars[0]
        assert float(raw[0]["close"]) == pytest.approx(first.close * 2, rel=1e-4)  # type: ignore[arg-type]
        assert first.date < split_day

    def test_only_polygon_reports_pay_dates(self) -> None:
        """Polygon's dividends carry the pay date it serves; Yahoo's chart and Tiingo have
        none."""
        start, end, _ = self._window()
        paid = self._polygon(start, end).dividends
        assert paid
        assert [d.pay_date for d in paid] == [sim_polygon.pay_date_for(d.date) for d in paid]
        for other in (self._yahoo(start, end), self._tiingo(start, end)):
            assert [d.pay_date for d in other.dividends] == [None] * len(paid)

    def test_withdrawn_dividends_are_not_served(self) -> None:
        """A dividend the exchange withdraws is missing from every provider's answer, and
        only that one."""
        start, end, _ = self._window()
        all_days = [d.date for d in self._yahoo(start, end).dividends]
        gone = frozenset(all_days[:1])
        chart = yahoo.decode_chart(
            _reply(
                200,
                msgspec.json.encode(
                    sim_yahoo.chart_payload(
                        self.SYMBOL, start, TODAY, live_bar=False, withdrawn=gone
                    )
                ),
            )
        )
        yahoo_days = yahoo.chart_history(chart, symbol=self.SYMBOL, start=start, end=end)
        rows = sim_polygon.aggs_rows(self.SYMBOL, start, TODAY, adjusted=True, today=TODAY)
        polygon_days = polygon.history_from_bodies(
            self.SYMBOL,
            aggs=msgspec.json.encode(
                sim_polygon.aggs_payload(self.SYMBOL, rows, adjusted=True, next_url=None)
            ),
            dividends=msgspec.json.encode(
                sim_polygon.dividends_payload(self.SYMBOL, start, today=TODAY, withdrawn=gone)
            ),
            splits=msgspec.json.encode(sim_polygon.splits_payload(self.SYMBOL, start, today=TODAY)),
            start=start,
            end=end,
        )
        tiingo_days = tiingo.history_from_body(
            self.SYMBOL,
            msgspec.json.encode(
                sim_tiingo.prices_payload(self.SYMBOL, start, TODAY, today=TODAY, withdrawn=gone)
            ),
            start=start,
            end=end,
        )
        for history in (yahoo_days, polygon_days, tiingo_days):
            assert [d.date for d in history.dividends] == all_days[1:]

    @pytest.mark.parametrize(
        ("pay_date", "expected"),
        [
            ("2026-02-13", date(2026, 2, 13)),
            ("2026-02-02", date(2026, 2, 2)),  # paid on the ex-date
            ("2026-01-30", None),  # before the ex-date: the table would refuse it
            ("", None),
            (None, None),
            ("TBD", None),
        ],
    )
    def test_polygon_pay_date(self, pay_date: str | None, expected: date | None) -> None:
        """Polygon's pay date is kept when it is an ISO date on or after the ex-date, and is
        none otherwise, without failing the answer."""
        body = {"results": [{"ex_dividend_date": "2026-02-02", "cash_amount": 0.25}]}
        if pay_date is not None:
            body["results"][0]["pay_date"] = pay_date
        bar = {"t": 1770008400000, "c": 100.0}  # 2026-02-02 00:00 New York
        history = polygon.history_from_bodies(
            "X",
            aggs=msgspec.json.encode({"status": "OK", "results": [bar]}),
            dividends=msgspec.json.encode(body),
            splits=b'{"results": []}',
            start=date(2026, 1, 1),
            end=date(2026, 3, 1),
        )
        assert [(d.date, d.pay_date) for d in history.dividends] == [(date(2026, 2, 2), expected)]

    def test_polygon_unadjusted_bars_differ(self) -> None:
        """Polygon's `adjusted=false` bars are raw, which is why the adapter asks for adjusted."""
        start, end, _ = self._window()
        raw = sim_polygon.aggs_rows(
            self.SYMBOL, start, start + timedelta(days=10), adjusted=False, today=TODAY
        )
        adjusted = self._polygon(start, end).bars[0]
        assert float(raw[0]["c"]) == pytest.approx(adjusted.close * 2, rel=1e-4)  # type: ignore[arg-type]


class TestYahooPayloads:
    @pytest.mark.parametrize(
        ("status", "body", "kind"),
        [
            (
                404,
                b'{"chart":{"result":null,"error":{"code":"Not Found","description":"x"}}}',
                ErrorKind.NOT_FOUND,
            ),
            (200, b'{"chart": null}', ErrorKind.NOT_FOUND),
            (200, b'{"chart":{"result":[],"error":null}}', ErrorKind.NOT_FOUND),
            (200, b'{"chart": {"result": [{"meta": ', ErrorKind.MALFORMED),
            (200, b"<html>Will be right back</html>", ErrorKind.MALFORMED),
            (
                400,
                b'{"chart":{"result":null,"error":{"code":"Bad Request","description":"x"}}}',
                ErrorKind.PERMANENT,
            ),
        ],
    )
    def test_chart_failures_are_classified(self, status: int, body: bytes, kind: ErrorKind) -> None:
        """Every spelling of "no data" and every undecodable body becomes a classified error."""
        with pytest.raises(ProviderError) as caught:
            yahoo.decode_chart(_reply(status, body))
        assert caught.value.kind is kind

    def test_nulls_and_live_bar(self) -> None:
        """A null close is a missing bar, and the live bar replaces its date's bar."""
        start = D("2026-11-16")
        payload = sim_yahoo.chart_payload("NULLS", start, TODAY, live_bar=True)
        quote = payload["chart"]["result"][0]["indicators"]["quote"][0]  # type: ignore[index]
        quote["close"][1] = None
        quote["close"][-1] = 123.0
        chart = yahoo.decode_chart(_reply(200, msgspec.json.encode(payload)))
        history = yahoo.chart_history(chart, symbol="NULLS", start=start, end=TODAY)
        days = [b.date for b in history.bars]
        assert len(days) == len(set(days)) == 4  # 5 sessions, one null
        assert history.bars[-1].close == 123.0
        assert all(b.close for b in history.bars)

    def test_summary(self) -> None:
        """quoteSummary's price and profile modules become asset info."""
        body = msgspec.json.encode(sim_yahoo.summary_payload("ACME", TODAY))
        info = yahoo.parse_summary(body, status=200, symbol="ACME")
        assert info.name == "Acme Holdings Inc."
        assert info.currency == "USD"
        assert info.asset_type == "EQUITY"
        assert info.sector is not None

    @pytest.mark.parametrize(
        ("status", "body", "kind"),
        [
            (
                404,
                msgspec.json.encode(sim_yahoo.summary_not_found_payload("ZZ")),
                ErrorKind.NOT_FOUND,
            ),
            (200, b"{not json", ErrorKind.MALFORMED),
            (401, msgspec.json.encode(sim_yahoo.INVALID_CRUMB), ErrorKind.PERMANENT),
        ],
    )
    def test_summary_failures(self, status: int, body: bytes, kind: ErrorKind) -> None:
        """An unknown symbol, a bad body and a rejected crumb are told apart."""
        with pytest.raises(ProviderError) as caught:
            yahoo.parse_summary(body, status=status, symbol="ZZ")
        assert caught.value.kind is kind


class TestKeyedProviderErrors:
    @pytest.mark.parametrize(
        ("module", "status", "body", "kind"),
        [
            (polygon, 401, b'{"status":"ERROR","error":"bad key"}', ErrorKind.PERMANENT),
            (polygon, 403, b'{"status":"NOT_AUTHORIZED","message":"plan"}', ErrorKind.PERMANENT),
            (
                polygon,
                404,
                b'{"status":"NOT_FOUND","message":"Ticker not found."}',
                ErrorKind.NOT_FOUND,
            ),
            (tiingo, 404, b'{"detail":"Error: Ticker \'ZZ\' not found"}', ErrorKind.NOT_FOUND),
            (tiingo, 401, b"nope", ErrorKind.PERMANENT),
        ],
    )
    def test_status_errors(self, module: object, status: int, body: bytes, kind: ErrorKind) -> None:
        """Keys and plans fail permanently; unknown tickers are not-found."""
        with pytest.raises(ProviderError) as caught:
            module.check_status(_reply(status, body))  # type: ignore[attr-defined]
        assert caught.value.kind is kind

    def test_malformed_polygon_body(self) -> None:
        """A Polygon body of the wrong shape is a MALFORMED error, never a crash or zero."""
        with pytest.raises(ProviderError) as caught:
            polygon.history_from_bodies(
                "X",
                aggs=b'{"results": [{"c": "abc", "t": 1}]}',
                dividends=b"{}",
                splits=b"{}",
                start=TODAY,
                end=TODAY,
            )
        assert caught.value.kind is ErrorKind.MALFORMED


class TestMarketDataSettings:
    def test_yahoo_hosts_follow_the_base_url(self) -> None:
        """Unset quote, cookie and crumb hosts follow YAHOO_BASE_URL (the simulated exchange)."""
        settings = Settings.from_env({"YAHOO_BASE_URL": "http://127.0.0.1:9000"})
        assert settings.yahoo_quote_url == "http://127.0.0.1:9000"
        assert settings.yahoo_cookie_url == "http://127.0.0.1:9000/_fc"
        assert settings.yahoo_crumb_url == "http://127.0.0.1:9000/v1/test/getcrumb"

    def test_real_yahoo_hosts(self) -> None:
        """The real Yahoo host gets Yahoo's real cookie host."""
        settings = Settings.from_env({})
        assert settings.yahoo_cookie_url == "https://fc.yahoo.com"

    def test_api_keys_are_redacted(self) -> None:
        """Provider API keys never appear in the settings log line."""
        settings = Settings.from_env({"POLYGON_API_KEY": "sekrit", "TIINGO_API_KEY": ""})
        redacted = settings.redacted()
        assert redacted["polygon_api_key"] == "***"
        assert redacted["tiingo_api_key"] == ""

    @pytest.mark.parametrize(
        ("rate", "interval"), [("5/minute", 12.0), ("50/second", 0.02), ("50/hour", 72.0)]
    )
    def test_rates(self, rate: str, interval: float) -> None:
        """A rate is turned into the interval between requests."""
        assert parse_rate(rate).interval == pytest.approx(interval)
