"""The report as one self-contained HTML page: inline SVG charts, inline CSS, no script."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 760, 260, 56, 16, 16, 28
PORTFOLIO_COLOUR, BENCHMARK_COLOUR, LOSS_COLOUR = "#1f6feb", "#8b949e", "#d1242f"
PALETTE = ("#1f6feb", "#2da44e", "#bf8700", "#8250df", "#d1242f", "#0a7e8c", "#9a6700", "#57606a")
_PERCENT_METRICS = {
    "total_return": "Total return",
    "twr": "Time-weighted return",
    "mwr": "Money-weighted return (XIRR, annual)",
    "volatility": "Volatility (annual)",
    "best_day": "Best day",
    "worst_day": "Worst day",
}
_RATIO_METRICS = {
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "beta": "Beta",
    "correlation": "Correlation",
}
_CSS = """
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f8fa;
color:#1f2328}main{max-width:820px;margin:0 auto;padding:24px}h1{margin:0 0 4px;font-size:26px}
h2{font-size:17px;margin:28px 0 8px}.sub{color:#59636e;margin:0 0 16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #d1d9e0;
border-radius:8px;padding:12px 16px;min-width:150px}.card b{display:block;font-size:22px}
section{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:12px 16px;
margin-top:16px}table{border-collapse:collapse;width:100%}
td,th{padding:4px 8px;border-bottom:1px solid #eaeef2;
text-align:right}td:first-child,th:first-child{text-align:left}.neg{color:#d1242f}
.pos{color:#1a7f37}
.legend span{display:inline-block;margin-right:16px}.sw{display:inline-block;width:12px;height:3px;
vertical-align:middle;margin-right:6px}.muted{color:#59636e;font-size:13px}
"""


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _sign_class(value: float | None) -> str:
    return "" if value is None else ("neg" if value < 0 else "pos")


def _scale(values: Sequence[float], low: float, high: float) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        hi, lo = hi + 1e-9 + abs(hi) * 0.01, lo - 1e-9 - abs(lo) * 0.01
    span = hi - lo
    return lo - span * low, hi + span * high


def _x(index: int, count: int) -> float:
    inner = WIDTH - PAD_LEFT - PAD_RIGHT
    return PAD_LEFT + (inner * index / (count - 1) if count > 1 else inner / 2)


def _y(value: float, lo: float, hi: float) -> float:
    inner = HEIGHT - PAD_TOP - PAD_BOTTOM
    return PAD_TOP + inner * (1 - (value - lo) / (hi - lo))


def _axes(lo: float, hi: float, dates: Sequence[str], fmt: str) -> list[str]:
    parts = []
    for step in range(5):
        value = lo + (hi - lo) * step / 4
        y = _y(value, lo, hi)
        label = fmt.format(value)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#eaeef2"/><text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="#59636e">{escape(label)}</text>'
        )
    for index in sorted({0, len(dates) // 2, len(dates) - 1}):
        anchor = "start" if index == 0 else "end" if index == len(dates) - 1 else "middle"
        parts.append(
            f'<text x="{_x(index, len(dates)):.1f}" y="{HEIGHT - 8}" font-size="11" '
            f'text-anchor="{anchor}" fill="#59636e">{escape(dates[index])}</text>'
        )
    return parts


def _polyline(values: Sequence[float | None], lo: float, hi: float, colour: str) -> str:
    count = len(values)
    points = " ".join(
        f"{_x(i, count):.1f},{_y(v, lo, hi):.1f}" for i, v in enumerate(values) if v is not None
    )
    return (
        f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2" '
        'stroke-linejoin="round"/>'
    )


def growth_chart(series: Sequence[Mapping[str, Any]]) -> str:
    """Growth of 100: the portfolio's TWR against the benchmark."""
    if len(series) < 2:
        return '<p class="muted">Not enough daily values for a chart yet.</p>'
    portfolio = [100 * float(p["growth"]) for p in series]
    benchmark = [
        100 * float(p["benchmark_growth"]) if p["benchmark_growth"] is not None else None
        for p in series
    ]
    lo, hi = _scale(portfolio + [b for b in benchmark if b is not None], 0.05, 0.05)
    dates = [str(p["date"]) for p in series]
    body = [
        *_axes(lo, hi, dates, "{:.0f}"),
        _polyline(benchmark, lo, hi, BENCHMARK_COLOUR),
        _polyline(portfolio, lo, hi, PORTFOLIO_COLOUR),
    ]
    return _svg("Growth of 100, portfolio against benchmark", body)


def drawdown_chart(series: Sequence[Mapping[str, Any]]) -> str:
    """Drawdown of the TWR wealth index, as a shaded area below zero."""
    if len(series) < 2:
        return '<p class="muted">Not enough daily values for a chart yet.</p>'
    values = [100 * float(p["drawdown"]) for p in series]
    lo, hi = min(min(values), -1.0) * 1.05, 0.0
    count = len(values)
    top = _y(0.0, lo, hi)
    points = " ".join(f"{_x(i, count):.1f},{_y(v, lo, hi):.1f}" for i, v in enumerate(values))
    area = (
        f'<polygon points="{_x(0, count):.1f},{top:.1f} {points} {_x(count - 1, count):.1f},'
        f'{top:.1f}" fill="{LOSS_COLOUR}" fill-opacity="0.25" stroke="{LOSS_COLOUR}" '
        'stroke-width="1.5"/>'
    )
    return _svg("Drawdown (%)", [*_axes(lo, hi, [str(p["date"]) for p in series], "{:.1f}"), area])


def allocation_chart(rows: Sequence[Mapping[str, Any]], title: str) -> str:
    """Horizontal bars of each bucket's weight."""
    if not rows:
        return '<p class="muted">Nothing held.</p>'
    bar_height, label_width, width = 22, 170, WIDTH - 220
    height = bar_height * len(rows) + 8
    parts = []
    for index, row in enumerate(rows):
        weight = float(row["weight"] or 0.0)
        y = 4 + index * bar_height
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<text x="0" y="{y + 15}" font-size="12" fill="#1f2328">{escape(str(row["name"]))}'
            f'</text><rect x="{label_width}" y="{y + 3}" width="{max(weight * width, 1):.1f}" '
            f'height="{bar_height - 6}" rx="3" fill="{colour}"/><text '
            f'x="{label_width + weight * width + 6:.1f}" y="{y + 15}" font-size="12" '
            f'fill="#59636e">{_pct(weight, 1)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {height}" width="100%">{"".join(parts)}</svg>'
    )


def _svg(title: str, body: Sequence[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%">'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>{"".join(body)}</svg>'
    )


def _metrics_table(performance: Mapping[str, Any]) -> str:
    metrics = performance.get("metrics", {})
    unavailable = performance.get("unavailable", {})
    rows = []

    def row(key: str, label: str, shown: str, cls: str = "") -> None:
        reason = unavailable.get(key)
        cell = f'<span class="muted">n/a: {escape(reason)}</span>' if reason else shown
        rows.append(f'<tr><td>{escape(label)}</td><td class="{cls}">{cell}</td></tr>')

    for key, label in _PERCENT_METRICS.items():
        value = metrics.get(key)
        if key == "total_return" and performance.get("total_return_annualised"):
            label = "Total return (annualised)"
        row(key, label, _pct(value), "" if key == "volatility" else _sign_class(value))
    drawdown = metrics.get("max_drawdown") or {}
    detail = " ".join(
        f"{name} {escape(str(drawdown[name]))}"
        for name in ("peak", "trough", "recovery")
        if drawdown.get(name)
    )
    row(
        "max_drawdown",
        "Maximum drawdown",
        f"{_pct(drawdown.get('value'))} <span class='muted'>{detail}</span>",
        "neg",
    )
    for key, label in _RATIO_METRICS.items():
        value = metrics.get(key)
        row(key, label, "–" if value is None else f"{value:.2f}")
    return f"<table>{''.join(rows)}</table>"


def _holdings_table(holdings: Sequence[Mapping[str, Any]]) -> str:
    if not holdings:
        return '<p class="muted">No positions.</p>'
    head = (
        "<tr><th>Symbol</th><th>Quantity</th><th>Close</th><th>Value</th><th>Weight</th>"
        "<th>Unrealised P&amp;L</th></tr>"
    )
    rows = "".join(
        f"<tr><td>{escape(str(h['symbol']))}</td><td>{float(h['quantity']):,.4g}</td>"
        f"<td>{_money(float(h['close']))}</td><td>{_money(float(h['market_value']))}</td>"
        f"<td>{_pct(h['weight'], 1)}</td><td class='{_sign_class(float(h['unrealized_pnl']))}'>"
        f"{_money(float(h['unrealized_pnl']))}</td></tr>"
        for h in holdings
    )
    return f"<table>{head}{rows}</table>"


def render_report_html(report: Mapping[str, Any]) -> str:
    """The report as a complete HTML document."""
    portfolio = report["portfolio"]
    performance = report["performance"]
    metrics = performance.get("metrics", {})
    currency = escape(str(portfolio.get("base_currency", "")))
    benchmark = escape(str(performance.get("benchmark", "")))
    cards = "".join(
        f'<div class="card">{escape(label)}<b class="{_sign_class(value) if pct else ""}">'
        f"{_pct(value) if pct else _money(value)}</b></div>"
        for label, value, pct in (
            (f"Value ({currency})", report.get("total_value"), False),
            ("Time-weighted return", metrics.get("twr"), True),
            ("Money-weighted, annual", metrics.get("mwr"), True),
            ("Max drawdown", (metrics.get("max_drawdown") or {}).get("value"), True),
        )
    )
    series = report["series"]
    allocation = report["allocation"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(str(portfolio["name"]))}: portfolio report</title><style>{_CSS}</style></head>
<body><main>
<h1>{escape(str(portfolio["name"]))}</h1>
<p class="sub">{escape(str(report["start"]))} to {escape(str(report["end"]))} · base currency
{currency} · benchmark {benchmark}</p>
<div class="cards">{cards}</div>
<section><h2>Growth of 100</h2>
<p class="legend"><span><i class="sw" style="background:{PORTFOLIO_COLOUR}"></i>
Portfolio (time-weighted)</span>
<span><i class="sw" style="background:{BENCHMARK_COLOUR}"></i>{benchmark}</span></p>
{growth_chart(series)}</section>
<section><h2>Drawdown</h2>{drawdown_chart(series)}</section>
<section><h2>Allocation by asset type</h2>
{allocation_chart(allocation["asset_type"], "Allocation by asset type")}
<h2>Allocation by sector</h2>
{allocation_chart(allocation["sector"], "Allocation by sector")}</section>
<section><h2>Holdings</h2>{_holdings_table(report["holdings"])}
<p class="muted">Cash {_money(report.get("cash"))} {currency}</p></section>
<section><h2>Metrics</h2>{_metrics_table(performance)}
<p class="muted">Daily returns over NYSE trading days, flows at the start of the day; annualised
with 252 trading days. Conventions: docs/METRICS.md.</p></section>
</main></body></html>
"""
