"""Analytics tasks on a real worker: snapshots, performance and reports over real Postgres."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import asyncpg
import numpy as np
import pytest
from celery import Celery

from service.core.celery_config import create_celery_app
from service.core.clock import exchange_today
from service.core.settings import Settings
from service.core.trading_calendar import NYSE
from tests.conftest import PINNED_CLOCK
from tests.portfolio_data import add_transactions, create_portfolio, new_owner_id, put_closes
from tests.processes import ManagedProcess

D = date.fromisoformat
AXA_CLOSES = {
    D("2019-06-24"): 10.0,
    D("2019-06-25"): 11.0,
    D("2019-06-26"): 12.0,
    D("2019-06-27"): 11.0,
    D("2019-06-28"): 12.0,
    D("2019-07-01"): 13.0,
    D("2019-07-02"): 12.0,
    # 2019-07-03 missing from the data: the 2019-07-02 close carries.
    D("2019-07-05"): 14.0,
    D("2019-07-08"): 15.0,
}
# Expected snapshots: (total value, net flow, day change) per trading day.
EXPECTED = {
    D("2019-06-24"): (1000.0, 1000.0, 0.0),
    D("2019-06-25"): (1000.0, 0.0, 0.0),
    D("2019-06-26"): (1050.0, 0.0, 50.0),
    D("2019-06-27"): (1000.0, 0.0, -50.0),
    D("2019-06-28"): (1050.0, 0.0, 50.0),
    D("2019-07-01"): (1200.0, 100.0, 50.0),
    D("2019-07-02"): (1150.0, 0.0, -50.0),
    D("2019-07-03"): (1150.0, 0.0, 0.0),
    D("2019-07-05"): (1230.0, 0.0, 80.0),
    D("2019-07-08"): (1270.0, 0.0, 40.0),
}
TRANSACTIONS: list[dict[str, Any]] = [
    {"type": "DEPOSIT", "date": D("2019-06-24"), "amount": 1000},
    {"type": "BUY", "date": D("2019-06-25"), "symbol": "AXA1", "quantity": 50, "price": 11},
    {"type": "DEPOSIT", "date": D("2019-06-29"), "amount": 100},  # a Saturday
    {"type": "SELL", "date": D("2019-07-02"), "symbol": "AXA1", "quantity": 10, "price": 12},
]


@pytest.fixture(scope="module")
def celery_client(settings: Settings) -> Iterator[Celery]:
    """A publishing-only Celery app, as the API uses."""
    app = create_celery_app(settings)
    yield app
    app.close()


@pytest.fixture(scope="module")
async def scenario(pool: asyncpg.Pool) -> dict[str, int]:
    """Two owners; owner A has a good, an unpriced and a foreign-currency portfolio."""
    await put_closes(pool, "AXA1", AXA_CLOSES)
    # Quoted in a currency whose rate no provider has ("ZZ…" is unknown to the exchange).
    await put_closes(pool, "EURX1", {D("2019-06-24"): 5.0}, currency="ZZZ")
    spy = {day: 100.0 + i * (1 if i % 3 else -2) for i, day in enumerate(EXPECTED)}
    del spy[D("2019-07-02")]  # a benchmark day missing
    await put_closes(pool, "SPY", spy, asset_type="ETF", sector="Index")
    owner_a, owner_b = await new_owner_id(pool), await new_owner_id(pool)
    good = await create_portfolio(pool, owner_id=owner_a, name="good")
    await add_transactions(pool, good, TRANSACTIONS)
    unpriced = await create_portfolio(pool, owner_id=owner_a, name="unpriced")
    await add_transactions(
        pool,
        unpriced,
        [{"type": "BUY", "date": D("2019-06-25"), "symbol": "NOPX1", "quantity": 1, "price": 1}],
    )
    foreign = await create_portfolio(pool, owner_id=owner_a, name="foreign")
    await add_transactions(
        pool,
        foreign,
        [{"type": "BUY", "date": D("2019-06-25"), "symbol": "EURX1", "quantity": 1, "price": 5}],
    )
    other = await create_portfolio(pool, owner_id=owner_b, name="someone else's")
    await add_transactions(pool, other, TRANSACTIONS)
    return {
        "owner_a": owner_a,
        "owner_b": owner_b,
        "good": good,
        "unpriced": unpriced,
        "foreign": foreign,
        "other": other,
    }


async def _snapshots(pool: asyncpg.Pool, portfolio_id: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT date, total_value::float8 AS v, net_flow::float8 AS f, day_change::float8 AS c, "
        "holdings, computed_at FROM portfolio_snapshots WHERE portfolio_id = $1 ORDER BY date",
        portfolio_id,
    )
    return rows


class TestSnapshotTask:
    async def test_range_backfill_is_correct_and_scoped_to_the_user(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        pool: asyncpg.Pool,
        scenario: dict[str, int],
    ) -> None:
        """A range gives one correct row per trading day (holiday skipped, gaps carried),
        failing portfolios write nothing, and another user's portfolio is untouched."""
        result = celery_client.send_task(
            "create_portfolio_snapshot",
            kwargs={"user_id": scenario["owner_a"], "start": "2019-06-24", "end": "2019-07-08"},
        ).get(timeout=60)
        rows = await _snapshots(pool, scenario["good"])
        assert {r["date"]: (r["v"], r["f"], r["c"]) for r in rows} == EXPECTED
        carried = next(r for r in rows if r["date"] == D("2019-07-03"))
        assert json.loads(json.dumps(carried["holdings"]))[0]["price_date"] == "2019-07-02"
        assert result["snapshots"] == len(EXPECTED)
        assert set(result["failed"]) == {str(scenario["unpriced"]), str(scenario["foreign"])}
        assert "no close for NOPX1" in result["failed"][str(scenario["unpriced"])]
        foreign = result["failed"][str(scenario["foreign"])]
        assert foreign.startswith("missing_fx: ['ZZZUSD 2019-06-25'")
        assert result["missing_fx"][:2] == ["ZZZUSD 2019-06-25", "ZZZUSD 2019-06-26"]
        assert result["fx_fetch_task_id"] is not None  # asked for, though no provider has it
        assert await _snapshots(pool, scenario["unpriced"]) == []
        assert await _snapshots(pool, scenario["other"]) == []

    async def test_rerun_changes_nothing(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        pool: asyncpg.Pool,
        scenario: dict[str, int],
    ) -> None:
        """Running the same snapshot twice (a redelivery) rewrites no row."""
        kwargs = {"portfolio_ids": [scenario["good"]], "start": "2019-06-24", "end": "2019-07-08"}
        celery_client.send_task("create_portfolio_snapshot", kwargs=kwargs).get(timeout=60)
        before = await _snapshots(pool, scenario["good"])
        again = celery_client.send_task("create_portfolio_snapshot", kwargs=kwargs).get(timeout=60)
        assert again["changed"] == 0
        assert await _snapshots(pool, scenario["good"]) == before

    async def test_weekend_date_carries_fridays_close(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        pool: asyncpg.Pool,
        scenario: dict[str, int],
    ) -> None:
        """A snapshot asked for a Saturday values the holdings at Friday's close."""
        celery_client.send_task(
            "create_portfolio_snapshot",
            kwargs={"portfolio_ids": [scenario["good"]], "date": "2019-07-06"},
        ).get(timeout=60)
        rows = {r["date"]: r for r in await _snapshots(pool, scenario["good"])}
        saturday = rows[D("2019-07-06")]
        assert (saturday["v"], saturday["c"]) == (1230.0, 0.0)
        assert saturday["holdings"][0]["price_date"] == "2019-07-05"


def _expected_returns() -> tuple[list[date], list[float]]:
    days = sorted(EXPECTED)
    returns = [
        EXPECTED[d][0] / (EXPECTED[p][0] + EXPECTED[d][1]) - 1 for p, d in itertools.pairwise(days)
    ]
    return days, returns


class TestPerformanceTask:
    async def test_metrics_stored_with_conventions(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        pool: asyncpg.Pool,
        scenario: dict[str, int],
    ) -> None:
        """TWR chains daily returns with flows at the start of the day; MWR zeroes the NPV;
        beta bridges the benchmark's missing day; the result is stored."""
        outcome = celery_client.send_task(
            "calculate_portfolio_performance",
            kwargs={"portfolio_id": scenario["good"], "start": "2019-06-24", "end": "2019-07-08"},
        ).get(timeout=60)
        stored = await pool.fetchval(
            "SELECT result FROM portfolio_performance WHERE portfolio_id = $1 "
            "ORDER BY computed_at DESC LIMIT 1",
            scenario["good"],
        )
        assert outcome["results"] == [stored]
        metrics = stored["metrics"]
        days, returns = _expected_returns()
        assert (stored["start"], stored["end"]) == ("2019-06-24", "2019-07-08")
        assert metrics["twr"] == pytest.approx(math.prod(1 + r for r in returns) - 1)
        assert metrics["total_return"] == pytest.approx(metrics["twr"])
        assert stored["total_return_annualised"] is False
        assert metrics["volatility"] == pytest.approx(np.std(returns, ddof=1) * math.sqrt(252))
        assert metrics["worst_day"] == pytest.approx(min(returns))
        rate = metrics["mwr"]
        flows = [(-1000.0, days[0]), (-100.0, D("2019-07-01")), (1270.0, days[-1])]
        npv = sum(a / (1 + rate) ** ((d - days[0]).days / 365) for a, d in flows)
        assert npv == pytest.approx(0.0, abs=1e-6)
        assert metrics["max_drawdown"]["value"] < 0
        assert metrics["beta"] is not None
        assert stored["unavailable"] == {}

    async def test_failing_portfolios_get_reasons_not_numbers(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        scenario: dict[str, int],
    ) -> None:
        """For all of a user's portfolios, one that cannot be valued gets null metrics with the
        reason, while the others are computed."""
        outcome = celery_client.send_task(
            "calculate_portfolio_performance",
            kwargs={"user_id": scenario["owner_a"], "start": "2019-06-24", "end": "2019-07-08"},
        ).get(timeout=60)
        by_id = {r["portfolio_id"]: r for r in outcome["results"]}
        assert set(by_id) == {scenario["good"], scenario["unpriced"], scenario["foreign"]}
        unpriced = by_id[scenario["unpriced"]]
        assert all(value is None for value in unpriced["metrics"].values())
        assert "no close for NOPX1" in unpriced["unavailable"]["twr"]
        foreign = by_id[scenario["foreign"]]["unavailable"]["mwr"]
        assert foreign.startswith("missing_fx: ['ZZZUSD 2019-06-25', 'ZZZUSD 2019-06-26'")
        assert by_id[scenario["good"]]["metrics"]["twr"] is not None

    async def test_portfolio_starting_inside_the_window_counts_its_first_day(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        pool: asyncpg.Pool,
        scenario: dict[str, int],
    ) -> None:
        """Bought at 10 on 2019-06-25 (close 11) and held to a close of 15, a portfolio begun
        inside the window returns 15/10 - 1 from its cost (not 15/11 - 1 from its first close),
        measured from the trading day before."""
        portfolio = await create_portfolio(pool, owner_id=await new_owner_id(pool), name="late")
        await add_transactions(
            pool,
            portfolio,
            [
                {
                    "type": "BUY",
                    "date": D("2019-06-25"),
                    "symbol": "AXA1",
                    "quantity": 10,
                    "price": 10,
                }
            ],
        )
        outcome = celery_client.send_task(
            "calculate_portfolio_performance",
            kwargs={"portfolio_id": portfolio, "start": "2019-06-20", "end": "2019-07-08"},
        ).get(timeout=60)
        (stored,) = outcome["results"]
        assert stored["start"] == "2019-06-24"
        assert stored["metrics"]["twr"] == pytest.approx(150 / 100 - 1)

    async def test_another_users_portfolio_is_not_found(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        scenario: dict[str, int],
    ) -> None:
        """Asking for a portfolio with someone else's user id fails instead of computing it."""
        result = celery_client.send_task(
            "calculate_portfolio_performance",
            kwargs={"portfolio_id": scenario["other"], "user_id": scenario["owner_a"], "days": 30},
        )
        with pytest.raises(Exception, match="not found"):
            result.get(timeout=60)


@pytest.fixture(scope="module")
async def recent_portfolio(pool: asyncpg.Pool) -> int:
    """A portfolio with 60 days of recent trading in two sectors."""
    today = exchange_today(PINNED_CLOCK)
    days = NYSE.trading_days(today - timedelta(days=90), today)
    await put_closes(pool, "RPTA1", {d: 50 + 5 * math.sin(i / 5) for i, d in enumerate(days)})
    await put_closes(
        pool,
        "RPTB1",
        {d: 20 + i * 0.1 for i, d in enumerate(days)},
        asset_type="Bond ETF",
        sector="Fixed income",
    )
    await put_closes(pool, "SPY", {d: 400 + 3 * math.cos(i / 7) + i for i, d in enumerate(days)})
    portfolio = await create_portfolio(
        pool, owner_id=await new_owner_id(pool), name="Report & <Co>"
    )
    await add_transactions(
        pool,
        portfolio,
        [
            {"type": "DEPOSIT", "date": days[0], "amount": 10_000},
            {"type": "BUY", "date": days[0], "symbol": "RPTA1", "quantity": 100, "price": 50},
            {"type": "BUY", "date": days[3], "symbol": "RPTB1", "quantity": 150, "price": 20},
            {"type": "WITHDRAWAL", "date": days[30], "amount": 1000},
        ],
    )
    return portfolio


class TestReportTask:
    async def test_json_report(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        pool: asyncpg.Pool,
        recent_portfolio: int,
    ) -> None:
        """The JSON report holds weighted holdings, allocation by type and sector, metrics and
        the value series against the benchmark."""
        outcome = celery_client.send_task(
            "generate_portfolio_report",
            kwargs={"portfolio_id": recent_portfolio, "days": 90, "format": "json"},
        ).get(timeout=60)
        body = await pool.fetchval(
            "SELECT body FROM portfolio_reports WHERE id = $1", outcome["report_id"]
        )
        report = json.loads(body)
        weights = [h["weight"] for h in report["holdings"]]
        cash_weight = report["cash"] / report["total_value"]
        assert sum(weights) + cash_weight == pytest.approx(1.0)
        assert {a["name"] for a in report["allocation"]["sector"]} == {
            "Technology",
            "Fixed income",
            "Cash",
        }
        assert report["series"][0]["growth"] == 1.0
        assert report["series"][0]["benchmark_growth"] == 1.0
        assert report["performance"]["metrics"]["twr"] == pytest.approx(
            report["series"][-1]["growth"] - 1
        )
        assert min(p["drawdown"] for p in report["series"]) == pytest.approx(
            report["performance"]["metrics"]["max_drawdown"]["value"]
        )

    async def test_html_report_is_self_contained(
        self,
        worker: ManagedProcess,
        celery_client: Celery,
        pool: asyncpg.Pool,
        recent_portfolio: int,
    ) -> None:
        """The HTML report has inline SVG charts, escapes names, and loads nothing external."""
        outcome = celery_client.send_task(
            "generate_portfolio_report",
            kwargs={"portfolio_id": recent_portfolio, "days": 90, "format": "html"},
        ).get(timeout=60)
        body: str = await pool.fetchval(
            "SELECT body FROM portfolio_reports WHERE id = $1", outcome["report_id"]
        )
        assert body.count("<svg") >= 4
        assert "Report &amp; &lt;Co&gt;" in body
        assert "<script" not in body
        assert "http://" not in body.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in body
