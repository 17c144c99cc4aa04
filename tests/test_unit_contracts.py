"""The task contracts: one definition of each task's name, queue, arguments and limits."""

from __future__ import annotations

import ast
from datetime import date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from service.core.contracts import (
    CONTRACTS,
    MAX_DAYS,
    MAX_PORTFOLIO_IDS,
    CalculatePortfolioPerformance,
    Cleanup,
    CreatePortfolioSnapshot,
    FetchAssetInfo,
    FetchMarketData,
    GeneratePortfolioReport,
    InvalidTaskArguments,
    TaskContract,
    UpdatePortfolioPrices,
    contracts_by_name,
    performance_window,
)
from service.core.trading_calendar import EXCHANGE_TZ
from workers.tasks import BODIES

D = date.fromisoformat
ROOT = Path(__file__).resolve().parent.parent


class TestCatalogue:
    def test_names_and_submit_paths_are_unique(self) -> None:
        """No two contracts share a task name or a submit path."""
        assert len(contracts_by_name()) == len(CONTRACTS)
        paths = [c.submit_path for c in CONTRACTS if c.submit_path is not None]
        assert len(paths) == len(set(paths)) == 6

    def test_every_contract_has_exactly_one_body(self) -> None:
        """The worker pairs every contract with a body, and runs nothing without a contract."""
        assert set(BODIES) == set(CONTRACTS)

    def test_a_name_used_twice_is_refused(self) -> None:
        """Registering two contracts under one name is a programming error, caught at once."""

        class Impostor(TaskContract, frozen=True):
            name = "fetch_market_data"
            queue = "market_data"

        with pytest.raises(ValueError, match="used by two contracts"):
            contracts_by_name((FetchMarketData, Impostor))

    def test_each_task_name_is_written_in_one_module(self) -> None:
        """Outside the contracts module, no source file under service/ or workers/ spells a
        task name as a string literal: every other side refers to the contract."""
        names = {c.name for c in CONTRACTS}
        offenders = []
        for path in [
            *ROOT.joinpath("service").rglob("*.py"),
            *ROOT.joinpath("workers").rglob("*.py"),
        ]:
            if path.name == "contracts.py" and path.parent.name == "core":
                continue
            tree = ast.parse(path.read_text())
            exported = {  # `__all__` lists function names, some equal to task names
                id(constant)
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(getattr(target, "id", None) == "__all__" for target in node.targets)
                for constant in ast.walk(node.value)
            }
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Constant)
                    and node.value in names
                    and id(node) not in exported
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
        assert offenders == []


class TestNoArguments:
    def test_price_update_without_arguments_means_every_held_symbol(self) -> None:
        """`update_portfolio_prices` with no arguments names no user, portfolios or symbols,
        which its body reads as every symbol held in any portfolio."""
        task = UpdatePortfolioPrices.decode({})
        assert (task.user_id, task.portfolio_ids, task.symbols) == (None, None, None)
        assert task.kwargs() == {}

    def test_defaults_are_settled_once(self) -> None:
        """Defaults live in the contract, so the API, the scheduler and the worker agree."""
        assert CalculatePortfolioPerformance().days == 30
        assert GeneratePortfolioReport(portfolio_id=1).days == 365
        assert FetchMarketData(symbols=["aapl"]).period == "1y"
        assert Cleanup().kwargs() == {}


class TestValidation:
    @pytest.mark.parametrize(
        ("contract", "kwargs", "message"),
        [
            (FetchMarketData, {"symbols": []}, "length >= 1"),
            (FetchMarketData, {"symbols": ["A"], "period": "1y", "start": "2024-01-01"}, "period"),
            (FetchMarketData, {"symbols": ["A"], "end": "2024-01-01"}, "start: required"),
            (
                FetchMarketData,
                {"symbols": ["A"], "start": "2024-02-01", "end": "2024-01-01"},
                "end",
            ),
            (FetchMarketData, {"symbols": ["BAD SYMBOL"]}, "regex"),
            (UpdatePortfolioPrices, {"portfolio_ids": [1], "symbols": ["A"]}, "symbols:"),
            (
                UpdatePortfolioPrices,
                {"portfolio_ids": list(range(1, MAX_PORTFOLIO_IDS + 2))},
                "length",
            ),
            (FetchAssetInfo, {}, "missing required field `symbol`"),
            (CalculatePortfolioPerformance, {"days": MAX_DAYS + 1}, f"<= {MAX_DAYS}"),
            (CalculatePortfolioPerformance, {"days": 3, "start": "2024-01-01"}, "days:"),
            (CreatePortfolioSnapshot, {"date": "2024-01-02", "start": "2024-01-01"}, "date:"),
            (CreatePortfolioSnapshot, {"start": "2024-01-01"}, "start and end go together"),
            (CreatePortfolioSnapshot, {"start": "2010-01-01", "end": "2024-01-01"}, "ten years"),
            (CreatePortfolioSnapshot, {"portfolio_ids": [0]}, ">= 1"),
            (GeneratePortfolioReport, {"portfolio_id": 1, "format": "pdf"}, "Invalid enum"),
            (GeneratePortfolioReport, {"portfolio_id": 1, "colour": "red"}, "unknown field"),
            (Cleanup, {"task_retention_days": 0}, ">= 1"),
        ],
    )
    def test_broken_arguments_name_the_rule(
        self, contract: type[TaskContract], kwargs: dict[str, Any], message: str
    ) -> None:
        """Arguments that break a contract are refused with a message naming the field."""
        with pytest.raises(InvalidTaskArguments, match=message):
            contract.decode(kwargs)

    @pytest.mark.parametrize(
        "task",
        [
            FetchMarketData(symbols=["aapl", "MSFT", "AAPL"], start=D("2024-01-02")),
            UpdatePortfolioPrices(portfolio_ids=[3, 1, 3], user_id=7),
            CalculatePortfolioPerformance(
                portfolio_id=2, start=D("2024-01-01"), end=D("2024-06-30")
            ),
            CreatePortfolioSnapshot(start=D("2024-01-01"), end=D("2024-02-01")),
            GeneratePortfolioReport(portfolio_id=1, format="json"),
        ],
        ids=lambda task: task.name,
    )
    def test_message_round_trip(self, task: TaskContract) -> None:
        """What a sender publishes (`kwargs()`, JSON) decodes back to the same contract on
        the worker, normalised once (symbols upper-cased and de-duplicated, ids sorted)."""
        wire = msgspec.json.decode(msgspec.json.encode(task.kwargs()))
        assert type(task).decode(wire) == task

    def test_normalisation(self) -> None:
        """Symbols are upper-cased and de-duplicated in order; portfolio ids sorted and unique."""
        assert FetchMarketData(symbols=["msft", "aapl", "MSFT"]).symbols == ["MSFT", "AAPL"]
        assert UpdatePortfolioPrices(portfolio_ids=[3, 1, 3]).portfolio_ids == [1, 3]


class TestWindows:
    @pytest.mark.parametrize(
        ("kwargs", "today", "expected"),
        [
            # Thanksgiving 2026 is closed: the end is the Wednesday before.
            ({"days": 30}, "2026-11-26", ("2026-10-26", "2026-11-25")),
            # 30 days before Monday 2024-07-08 is Saturday 2024-06-08: the base is Monday.
            ({"days": 30}, "2024-07-08", ("2024-06-10", "2024-07-08")),
            (
                {"start": D("2019-06-22"), "end": D("2019-07-06")},
                "2026-01-05",
                ("2019-06-24", "2019-07-05"),
            ),
            (
                {"start": D("2019-06-24"), "end": D("2031-01-01")},
                "2024-01-02",
                ("2019-06-24", "2024-01-02"),
            ),
            ({"days": 365}, "2024-12-31", ("2024-01-02", "2024-12-31")),
        ],
    )
    def test_performance_window(
        self, kwargs: dict[str, Any], today: str, expected: tuple[str, str]
    ) -> None:
        """`days` counts back from the last trading day; the base is the first trading day on
        or after the start; the end never passes today."""
        base, end = performance_window(
            days=kwargs.get("days"),
            start=kwargs.get("start"),
            end=kwargs.get("end"),
            today=D(today),
        )
        assert (base.isoformat(), end.isoformat()) == expected

    def test_snapshot_dates(self) -> None:
        """A range yields its trading days; a single weekend date is kept as asked; no date
        means the last completed session at `as_of` (the fire's instant), else at now."""
        now = datetime(2024, 8, 1, 12, tzinfo=EXCHANGE_TZ)
        ranged = CreatePortfolioSnapshot.decode({"start": "2024-07-03", "end": "2024-07-08"})
        assert ranged.valuation_dates(now=now) == [
            D("2024-07-03"),
            D("2024-07-05"),
            D("2024-07-08"),
        ]
        single = CreatePortfolioSnapshot.decode({"date": "2024-07-06"})
        assert single.valuation_dates(now=now) == [D("2024-07-06")]
        saturday = datetime(2024, 7, 6, 12, tzinfo=EXCHANGE_TZ)
        assert CreatePortfolioSnapshot().valuation_dates(now=saturday) == [D("2024-07-05")]
        # Wednesday 3 July 2024 closed early at 13:00: at 13:30 that session is complete.
        fired = CreatePortfolioSnapshot.decode({"as_of": "2024-07-03T13:30:00-04:00"})
        assert fired.valuation_dates(now=now) == [D("2024-07-03")]
        assert CreatePortfolioSnapshot().valuation_dates(now=now) == [D("2024-07-31")]
