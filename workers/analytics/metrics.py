"""Return and risk metrics over a daily value series: pure numpy, conventions in docs/METRICS.md.

Every function takes arrays (and dates where a result names one) and returns
numbers. A metric that cannot be computed raises `Unavailable` with the
reason; callers report it as null plus that reason, never as zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

TRADING_DAYS = 252
DAYS_PER_YEAR = 365.0
FloatArray = npt.NDArray[np.float64]


class Unavailable(ValueError):
    """A metric that cannot be computed from the data given; the message is the reason."""


@dataclass(frozen=True, slots=True)
class Drawdown:
    """Largest peak-to-trough fall of the wealth index, as a negative fraction."""

    value: float
    peak: date | None
    trough: date | None
    recovery: date | None


def daily_returns(values: FloatArray, flows: FloatArray) -> FloatArray:
    """r_t = V_t / (V_{t-1} + F_t) - 1 for t >= 1, flows at the start of the day.

    A day starting with no capital and ending with none is a zero return. A
    withdrawal larger than the previous close (everything sold above it and
    taken out that day) leaves no capital at the start of the day; that day's
    flow counts at its end instead: r_t = (V_t - F_t) / V_{t-1} - 1. A day
    starting with nothing invested and ending with value is undefined.
    """
    if len(values) != len(flows):
        raise ValueError("values and flows differ in length")
    if len(values) < 2:
        raise Unavailable("fewer than two daily values")
    before = values[:-1]
    start = before + flows[1:]
    end = values[1:]
    empty = (start == 0) & (end == 0)
    at_end = (start <= 0) & ~empty & (before > 0) & (flows[1:] < 0)
    if np.any((start <= 0) & ~empty & ~at_end):
        raise Unavailable("a day starts with no invested capital but ends with value")
    base = np.where(empty, 1.0, np.where(at_end, before, start))
    gain = np.where(at_end, end - flows[1:], end)
    return np.where(empty, 0.0, gain / base - 1.0)


def wealth_index(returns: FloatArray) -> FloatArray:
    """W_0 = 1 at the base date, W_t = prod_{s<=t}(1 + r_s)."""
    return np.concatenate(([1.0], np.cumprod(1.0 + returns)))


def twr(returns: FloatArray) -> float:
    """Time-weighted return: prod(1 + r_t) - 1."""
    if len(returns) == 0:
        raise Unavailable("no daily returns in the window")
    return float(np.prod(1.0 + returns) - 1.0)


def annualised(cumulative: float, periods: int) -> float:
    """(1 + R)^(252 / periods) - 1 for a return over `periods` trading days."""
    if periods <= 0:
        raise Unavailable("no daily returns in the window")
    return float((1.0 + cumulative) ** (TRADING_DAYS / periods) - 1.0)


def total_return(returns: FloatArray, *, start: date, end: date) -> tuple[float, bool]:
    """The window's TWR, annualised over trading days when the window spans a year or more."""
    cumulative = twr(returns)
    if (end - start).days >= DAYS_PER_YEAR:
        return annualised(cumulative, len(returns)), True
    return cumulative, False


def volatility(returns: FloatArray) -> float:
    """Sample standard deviation (ddof=1) of daily returns x sqrt(252)."""
    if len(returns) < 2:
        raise Unavailable("fewer than two daily returns")
    return float(np.std(returns, ddof=1) * math.sqrt(TRADING_DAYS))


def per_period_rate(annual_rate: float) -> float:
    """The daily rate that compounds to `annual_rate` over 252 trading days."""
    return float((1.0 + annual_rate) ** (1.0 / TRADING_DAYS) - 1.0)


def sharpe(returns: FloatArray, *, risk_free_annual: float = 0.0) -> float:
    """mean(r - rf) / std(r - rf, ddof=1) x sqrt(252), rf converted geometrically."""
    if len(returns) < 2:
        raise Unavailable("fewer than two daily returns")
    excess = returns - per_period_rate(risk_free_annual)
    spread = float(np.std(excess, ddof=1))
    if spread == 0.0:
        raise Unavailable("daily returns do not vary")
    return float(np.mean(excess) / spread * math.sqrt(TRADING_DAYS))


def sortino(returns: FloatArray, *, mar: float = 0.0) -> float:
    """mean(r - MAR) x 252 / (sqrt(mean(min(r - MAR, 0)^2)) x sqrt(252)), over all days."""
    if len(returns) < 2:
        raise Unavailable("fewer than two daily returns")
    excess = returns - mar
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
    if downside == 0.0:
        raise Unavailable("no daily return fell below the minimum acceptable return")
    return float(np.mean(excess) * TRADING_DAYS / (downside * math.sqrt(TRADING_DAYS)))


def max_drawdown(returns: FloatArray, dates: Sequence[date]) -> Drawdown:
    """Drawdown of the TWR wealth index; `dates` has one more entry than `returns` (the base)."""
    if len(dates) != len(returns) + 1:
        raise ValueError("dates must include the base date before the first return")
    if len(returns) == 0:
        raise Unavailable("no daily returns in the window")
    wealth = wealth_index(returns)
    peaks = np.maximum.accumulate(wealth)
    drawdowns = wealth / peaks - 1.0
    trough = int(np.argmin(drawdowns))
    if drawdowns[trough] >= 0.0:
        return Drawdown(0.0, None, None, None)
    peak = int(np.argmax(wealth[: trough + 1]))
    recovered = np.nonzero(wealth[trough:] >= wealth[peak])[0]
    recovery = dates[trough + int(recovered[0])] if len(recovered) else None
    return Drawdown(float(drawdowns[trough]), dates[peak], dates[trough], recovery)


def best_and_worst_day(returns: FloatArray) -> tuple[float, float]:
    """The largest and smallest daily return."""
    if len(returns) == 0:
        raise Unavailable("no daily returns in the window")
    return float(np.max(returns)), float(np.min(returns))


def aligned_returns(
    portfolio_dates: Sequence[date],
    portfolio_wealth: FloatArray,
    benchmark_dates: Sequence[date],
    benchmark_closes: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Returns of both series between consecutive dates that both have.

    A day missing from either side is bridged: each series' return spans the
    same interval, so no return is paired with one from another day.
    """
    if list(portfolio_dates) == list(benchmark_dates):
        wealth = np.asarray(portfolio_wealth, dtype=np.float64)
        bench = np.asarray(benchmark_closes, dtype=np.float64)
    else:
        closes = dict(zip(benchmark_dates, benchmark_closes, strict=True))
        common = [
            (w, closes[d])
            for d, w in zip(portfolio_dates, portfolio_wealth, strict=True)
            if d in closes
        ]
        wealth = np.array([w for w, _ in common], dtype=np.float64)
        bench = np.array([c for _, c in common], dtype=np.float64)
    if len(wealth) < 3:
        raise Unavailable("fewer than three dates with both portfolio and benchmark values")
    return wealth[1:] / wealth[:-1] - 1.0, bench[1:] / bench[:-1] - 1.0


def beta(portfolio: FloatArray, benchmark: FloatArray) -> float:
    """cov(r_p, r_b) / var(r_b), both ddof=1."""
    if len(portfolio) < 2:
        raise Unavailable("fewer than two common daily returns")
    variance = float(np.var(benchmark, ddof=1))
    if variance == 0.0:
        raise Unavailable("benchmark returns do not vary")
    return float(np.cov(portfolio, benchmark, ddof=1)[0, 1] / variance)


def correlation(portfolio: FloatArray, benchmark: FloatArray) -> float:
    """Pearson correlation of the aligned daily returns."""
    if len(portfolio) < 2:
        raise Unavailable("fewer than two common daily returns")
    if float(np.std(portfolio)) == 0.0 or float(np.std(benchmark)) == 0.0:
        raise Unavailable("returns do not vary")
    return float(np.corrcoef(portfolio, benchmark)[0, 1])


def xnpv(rate: float, amounts: FloatArray, years: FloatArray) -> float:
    """Net present value of `amounts` at `years` after the first flow."""
    return float(np.sum(amounts / (1.0 + rate) ** years))


def xirr(amounts: Sequence[float], dates: Sequence[date], *, tolerance: float = 1e-10) -> float:
    """The annual rate r with sum(c_i / (1 + r)^((d_i - d_0) / 365)) = 0.

    Brackets the root by scanning rates from -99.99 % upwards and bisects the
    lowest bracket, so with several roots the lowest is returned (as pyxirr
    does) and a flow set with none raises Unavailable instead of guessing.
    """
    if len(amounts) != len(dates) or len(amounts) < 2:
        raise Unavailable("fewer than two cash flows")
    values = np.array(amounts, dtype=np.float64)
    if not (np.any(values > 0) and np.any(values < 0)):
        raise Unavailable("cash flows need both an outflow and an inflow")
    first = min(dates)
    years = np.array([(d - first).days / DAYS_PER_YEAR for d in dates], dtype=np.float64)
    if not np.any(years > 0):
        raise Unavailable("the cash flows span no time")
    grid = np.concatenate(
        (np.linspace(-0.9999, 0.0, 200, endpoint=False), np.expm1(np.linspace(0.0, 7.0, 400)))
    )
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        npv = (values[None, :] / (1.0 + grid[:, None]) ** years[None, :]).sum(axis=1)
    finite = np.isfinite(npv)
    for i in range(len(grid) - 1):
        if not (finite[i] and finite[i + 1]):
            continue
        if npv[i] == 0.0:
            return float(grid[i])
        if np.sign(npv[i]) != np.sign(npv[i + 1]):
            return _bisect(values, years, float(grid[i]), float(grid[i + 1]), tolerance)
    raise Unavailable("no rate between -99.99 % and +109,000 % balances the cash flows")


def _bisect(values: FloatArray, years: FloatArray, low: float, high: float, tol: float) -> float:
    f_low = xnpv(low, values, years)
    for _ in range(200):
        mid = (low + high) / 2.0
        f_mid = xnpv(mid, values, years)
        if f_mid == 0.0 or (high - low) / 2.0 < tol:
            return mid
        if np.sign(f_mid) == np.sign(f_low):
            low, f_low = mid, f_mid
        else:
            high = mid
    raise Unavailable("the rate did not converge")
