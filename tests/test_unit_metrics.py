"""Return and risk metrics: conventions pinned against hand-worked and published values."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest

from workers.analytics import metrics as m
from workers.analytics.performance import (
    DailySeries,
    compute_performance,
    from_inception,
    mwr_flows,
)


def arr(*values: float) -> m.FloatArray:
    return np.array(values, dtype=np.float64)


def days(n: int, start: date = date(2024, 1, 1)) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


class TestXirr:
    @pytest.mark.parametrize(
        ("flows", "expected", "tolerance"),
        [
            pytest.param(
                [
                    (-10000, "2008-01-01"),
                    (2750, "2008-03-01"),
                    (4250, "2008-10-30"),
                    (3250, "2009-02-15"),
                    (2750, "2009-04-01"),
                ],
                0.3733625335,
                1e-9,
                id="excel-help-example",
            ),
            pytest.param(
                [(-200, "2010-01-01"), (210, "2010-12-31")],
                0.050140747,
                1e-8,
                id="portfolio-performance-irr-test",
            ),
            pytest.param(
                [
                    (-10000, "2020-01-01"),
                    (5750, "2020-03-01"),
                    (4250, "2020-10-30"),
                    (3250, "2021-02-15"),
                ],
                0.6342972615260243,
                1e-9,
                id="pyxirr-docs",
            ),
            pytest.param(
                [(-100, "2021-01-01"), (50, "2022-01-01")],
                -0.5,
                1e-9,
                id="a-loss",
            ),
        ],
    )
    def test_published_examples(
        self, flows: list[tuple[float, str]], expected: float, tolerance: float
    ) -> None:
        """XIRR on a 365-day year reproduces Excel's, Portfolio Performance's and pyxirr's
        published results."""
        amounts = [a for a, _ in flows]
        dates = [date.fromisoformat(d) for _, d in flows]
        assert m.xirr(amounts, dates) == pytest.approx(expected, abs=tolerance)

    @pytest.mark.parametrize(
        ("amounts", "reason"),
        [
            ([-100.0, -50.0], "both an outflow and an inflow"),
            ([-100.0], "fewer than two"),
        ],
    )
    def test_no_rate_is_unavailable(self, amounts: list[float], reason: str) -> None:
        """Flows with no sign change give no rate, with a reason, instead of a number."""
        with pytest.raises(m.Unavailable, match=reason):
            m.xirr(amounts, days(len(amounts)))

    def test_several_roots_returns_the_lowest(self) -> None:
        """With two roots (here 10 % and 20 %), the lowest rate is returned, as pyxirr does."""
        # -1, +2.3, -1.32 at yearly steps: (1+r)^2 - 2.3(1+r) + 1.32 = 0 → r = 0.1 or 0.2.
        dates = [date(2001, 1, 1), date(2002, 1, 1), date(2003, 1, 1)]
        dates = [dates[0], dates[0] + timedelta(days=365), dates[0] + timedelta(days=730)]
        assert m.xirr([-1.0, 2.3, -1.32], dates) == pytest.approx(0.1, abs=1e-9)


class TestReturns:
    def test_daily_returns_put_flows_at_start_of_day(self) -> None:
        """r_t = V_t / (V_{t-1} + F_t) - 1."""
        returns = m.daily_returns(arr(100, 210, 105), arr(0, 100, 0))
        assert returns == pytest.approx([0.05, -0.5])

    def test_twr_ignores_size_and_timing_of_deposits(self) -> None:
        """The same market moves give the same TWR whatever is deposited and when."""
        market = [0.01, -0.02, 0.03, 0.005]
        outcomes = []
        for deposits in ([0, 0, 0, 0], [0, 5000, 0, 0], [0, 0, 0, 100_000], [0, 1, 2, 3]):
            values, flows, value = [1000.0], [0.0], 1000.0
            for move, deposit in zip(market, deposits, strict=True):
                value = (value + deposit) * (1 + move)
                values.append(value)
                flows.append(float(deposit))
            outcomes.append(m.twr(m.daily_returns(arr(*values), arr(*flows))))
        expected = math.prod(1 + r for r in market) - 1
        assert outcomes == pytest.approx([expected] * 4)

    def test_withdrawing_more_than_the_previous_close_counts_the_flow_at_day_end(self) -> None:
        """Selling everything above yesterday's close and withdrawing it all is that day's gain,
        not an undefined day that voids every metric."""
        returns = m.daily_returns(arr(1000, 0), arr(0, -1100))
        assert returns == pytest.approx([0.1])

    def test_undefined_start_is_unavailable(self) -> None:
        """A day that starts with nothing invested but ends with value has no return."""
        with pytest.raises(m.Unavailable, match="no invested capital"):
            m.daily_returns(arr(0, 10), arr(0, 0))

    @pytest.mark.parametrize(
        ("returns", "span_days", "expected", "is_annualised"),
        [
            ([0.1], 30, 0.1, False),
            ([0.0] * 251 + [0.21], 364, 0.21, False),
            ([0.0] * 503 + [0.21], 730, 0.1, True),
        ],
    )
    def test_total_return_annualised_only_for_a_year_or_more(
        self, returns: list[float], span_days: int, expected: float, is_annualised: bool
    ) -> None:
        """Windows under a year report the cumulative return; a year or more, the annual one."""
        start = date(2020, 1, 1)
        value, flag = m.total_return(
            arr(*returns), start=start, end=start + timedelta(days=span_days)
        )
        assert value == pytest.approx(expected)
        assert flag is is_annualised


class TestRisk:
    def test_volatility_is_sample_std_times_sqrt_252(self) -> None:
        """Volatility uses ddof=1 and √252."""
        returns = arr(0.01, -0.01, 0.02, 0.0)
        assert m.volatility(returns) == pytest.approx(np.std(returns, ddof=1) * math.sqrt(252))

    def test_sharpe_uses_geometric_per_period_risk_free(self) -> None:
        """rf per period is (1 + rf)^(1/252) - 1, subtracted before mean and std."""
        returns = arr(0.01, -0.005, 0.007, 0.002)
        rf = (1.04) ** (1 / 252) - 1
        excess = returns - rf
        expected = excess.mean() / excess.std(ddof=1) * math.sqrt(252)
        assert m.sharpe(returns, risk_free_annual=0.04) == pytest.approx(expected)
        assert m.sharpe(returns, risk_free_annual=0.04) < m.sharpe(returns)

    def test_sortino_downside_over_all_observations(self) -> None:
        """Downside deviation averages squared shortfalls over every day, not only losing ones."""
        returns = arr(0.02, -0.01, 0.03, -0.02)
        downside = math.sqrt((0.01**2 + 0.02**2) / 4)
        expected = returns.mean() * 252 / (downside * math.sqrt(252))
        assert m.sortino(returns) == pytest.approx(expected)

    def test_sortino_without_losses_is_unavailable(self) -> None:
        """No return below the MAR: Sortino is undefined, not infinite or zero."""
        with pytest.raises(m.Unavailable, match="minimum acceptable"):
            m.sortino(arr(0.01, 0.02))

    def test_max_drawdown_peak_trough_recovery(self) -> None:
        """Drawdown is the worst fall of the wealth index, with peak, trough and recovery dates."""
        returns = arr(0.1, -0.5, 0.2, 0.5, 0.3)
        dd = m.max_drawdown(returns, days(6))
        assert dd.value == pytest.approx(-0.5)
        assert (dd.peak, dd.trough, dd.recovery) == (days(6)[1], days(6)[2], days(6)[5])

    def test_max_drawdown_without_recovery(self) -> None:
        """A drawdown not yet recovered has a null recovery date."""
        dd = m.max_drawdown(arr(-0.1, 0.05), days(3))
        assert dd.value == pytest.approx(-0.1)
        assert (dd.peak, dd.trough, dd.recovery) == (days(3)[0], days(3)[1], None)

    def test_drawdown_unaffected_by_a_withdrawal(self) -> None:
        """Withdrawing half the value is not a loss: the drawdown sees market moves only."""
        values = arr(1000, 1010, 505, 510)
        flows = arr(0, 0, -505, 0)
        dd = m.max_drawdown(m.daily_returns(values, flows), days(4))
        assert dd.value == 0.0

    def test_beta_and_correlation_on_aligned_dates(self) -> None:
        """A benchmark day missing is bridged: both sides' returns span the same dates."""
        dates = days(5)
        wealth = arr(1.0, 1.02, 1.0, 1.03, 1.05)
        bench_dates = [dates[0], dates[1], dates[3], dates[4]]
        bench = arr(100, 101, 101.5, 102.5)
        portfolio_r, bench_r = m.aligned_returns(dates, wealth, bench_dates, bench)
        assert portfolio_r == pytest.approx([0.02, 1.03 / 1.02 - 1, 1.05 / 1.03 - 1])
        assert bench_r == pytest.approx([0.01, 101.5 / 101 - 1, 102.5 / 101.5 - 1])
        expected = np.cov(portfolio_r, bench_r, ddof=1)[0, 1] / np.var(bench_r, ddof=1)
        assert m.beta(portfolio_r, bench_r) == pytest.approx(expected)

    def test_beta_of_a_leveraged_copy_is_its_leverage(self) -> None:
        """A portfolio that moves exactly twice the benchmark has beta 2 and correlation 1."""
        bench_r = arr(0.01, -0.02, 0.015, 0.003)
        assert m.beta(2 * bench_r, bench_r) == pytest.approx(2.0)
        assert m.correlation(2 * bench_r, bench_r) == pytest.approx(1.0)


class TestComputePerformance:
    def test_result_shape_and_unavailable_reasons(self) -> None:
        """Every metric is a number or null with a reason; no benchmark gives null beta."""
        dates = tuple(days(4))
        series = DailySeries(dates=dates, values=(100.0, 101.0, 99.0, 102.0), flows=(0,) * 4)
        result = compute_performance(
            series, benchmark_dates=[], benchmark_closes=[], risk_free_annual=0.0
        )
        assert result.metrics["twr"] == pytest.approx(0.02)
        assert result.metrics["total_return"] == pytest.approx(0.02)
        assert result.metrics["beta"] is None
        assert "benchmark" in result.unavailable["beta"]
        assert result.metrics["worst_day"] == pytest.approx(99 / 101 - 1)
        assert set(result.unavailable) == {"beta", "correlation"}
        assert result.metrics["max_drawdown"]["trough"] == dates[2].isoformat()

    def test_mwr_flows_start_value_in_end_value_out(self) -> None:
        """The start value and deposits are investor outflows; the end value is an inflow."""
        series = DailySeries(
            dates=tuple(days(3)), values=(100.0, 160.0, 170.0), flows=(0.0, 50.0, 0.0)
        )
        assert mwr_flows(series) == ([-100.0, -50.0, 170.0], days(3))

    def test_inception_inside_the_window_keeps_its_first_day_return(self) -> None:
        """A portfolio that buys at 10 on its first day and closes at 11 returns 10 % on that
        day: a zero value is prepended on the trading day before, and MWR sees the same flow."""
        first = DailySeries(
            dates=(date(2024, 1, 3), date(2024, 1, 4)), values=(550.0, 600.0), flows=(500.0, 0.0)
        )
        series = from_inception(first, day_before=date(2024, 1, 2))
        assert series.dates[0] == date(2024, 1, 2)
        result = compute_performance(
            series, benchmark_dates=[], benchmark_closes=[], risk_free_annual=0.0
        )
        assert result.metrics["twr"] == pytest.approx(600 / 500 - 1)
        assert result.metrics["best_day"] == pytest.approx(0.1)
        assert mwr_flows(series)[0] == [-0.0, -500.0, 600.0]

    @pytest.mark.parametrize(
        ("flows", "day_before"),
        [
            pytest.param((0.0, 0.0), date(2024, 1, 2), id="no inflow on the first day"),
            pytest.param((500.0, 0.0), date(2024, 1, 3), id="not before the first day"),
        ],
    )
    def test_from_inception_leaves_other_series_alone(
        self, flows: tuple[float, float], day_before: date
    ) -> None:
        """Without an inflow on the first day, or with no earlier day, nothing is prepended."""
        series = DailySeries(
            dates=(date(2024, 1, 3), date(2024, 1, 4)), values=(550.0, 600.0), flows=flows
        )
        assert from_inception(series, day_before=day_before) is series

    def test_single_value_makes_everything_unavailable(self) -> None:
        """One daily value yields no returns: every metric null with a reason."""
        series = DailySeries(dates=(date(2024, 1, 2),), values=(100.0,), flows=(0.0,))
        result = compute_performance(
            series, benchmark_dates=[], benchmark_closes=[], risk_free_annual=0.0
        )
        assert all(value is None for value in result.metrics.values())
        assert set(result.unavailable) == set(result.metrics)
