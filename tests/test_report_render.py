"""The HTML report renders to a visible page in headless Chromium."""

from __future__ import annotations

import math
import struct
import subprocess
import zlib
from datetime import date, timedelta
from pathlib import Path

import pytest

from workers.analytics.performance import DailySeries, compute_performance
from workers.analytics.report_build import AssetInfo, build_report
from workers.analytics.report_html import render_report_html

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (.ci/run installs it)",
)


def _sample_report() -> str:
    days = tuple(date(2025, 1, 2) + timedelta(days=i) for i in range(120))
    values = tuple(10_000 * (1 + 0.1 * math.sin(i / 9) + i / 400) for i in range(120))
    series = DailySeries(dates=days, values=values, flows=(0.0,) * 120)
    bench = [400 + 10 * math.cos(i / 11) + i / 3 for i in range(120)]
    result = compute_performance(
        series, benchmark_dates=days, benchmark_closes=bench, risk_free_annual=0.0
    )
    performance = {
        "portfolio_id": 1,
        "start": days[0].isoformat(),
        "end": days[-1].isoformat(),
        "metrics": result.metrics,
        "unavailable": result.unavailable,
        "total_return_annualised": False,
        "benchmark": "SPY",
    }
    holdings = [
        {
            "symbol": "AAA",
            "quantity": 40,
            "close": 100.0,
            "market_value": 4000.0,
            "cost_basis": 3500.0,
            "unrealized_pnl": 500.0,
            "price_date": "2025-04-30",
        },
        {
            "symbol": "BBB",
            "quantity": 100,
            "close": 50.0,
            "market_value": 5000.0,
            "cost_basis": 5200.0,
            "unrealized_pnl": -200.0,
            "price_date": "2025-04-30",
        },
    ]
    report = build_report(
        portfolio={"id": 1, "name": "Rendered", "base_currency": "USD"},
        performance=performance,
        latest={
            "date": "2025-04-30",
            "total_value": 10_000.0,
            "cash": 1000.0,
            "holdings": holdings,
        },
        series=series,
        assets={
            "AAA": AssetInfo(name="A", asset_type="Equity", sector="Tech"),
            "BBB": AssetInfo(name="B", asset_type="Bond", sector="Rates"),
        },
        benchmark_dates=days,
        benchmark_closes=bench,
    )
    return render_report_html(report)


def _screenshot(html: str, folder: Path, name: str) -> bytes:
    page = folder / f"{name}.html"
    page.write_text(html)
    shot = folder / f"{name}.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={folder / 'profile'}",
            "--window-size=900,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )
    return shot.read_bytes()


def distinct_pixel_bytes(png: bytes) -> int:
    """How many distinct byte values the image data holds (a blank page has very few)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    position, data = 8, b""
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    return len(set(zlib.decompress(data)))


class TestReportRendering:
    def test_report_screenshot_is_not_blank(self, tmp_path: Path) -> None:
        """The report page paints charts and text, unlike an empty page rendered the same way."""
        blank = distinct_pixel_bytes(_screenshot("<!doctype html><body></body>", tmp_path, "b"))
        report = distinct_pixel_bytes(_screenshot(_sample_report(), tmp_path, "r"))
        assert blank < 16
        assert report > 128
