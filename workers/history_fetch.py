"""`fetch_market_data`: daily bars for many symbols from the Yahoo chart API, concurrently.

Each symbol is fetched on the worker's shared session (at most `CONCURRENCY` at once),
parsed, and upserted in its own short transaction, so a cancelled task leaves whole
symbols written and nothing half-written. Unknown symbols and bad payloads are listed
under `failed` with their reason; they do not fail the task.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import aiohttp

from service.logs import get_logger
from workers.price_store import bar_rows, upsert_bars
from workers.runtime import TaskContext
from workers.yahoo_chart import ChartError, parse_chart

log = get_logger(__name__)
CONCURRENCY = 20


def chart_query(*, period: str | None, start: str | None, end: str | None) -> dict[str, str]:
    """Query parameters of the chart endpoint for a period or a date range."""
    query = {"interval": "1d", "events": "div,splits"}
    if start is None:
        query["range"] = period or "1y"
        return query
    first = datetime.combine(date.fromisoformat(start), time(), tzinfo=UTC)
    last_day = date.fromisoformat(end) if end else datetime.now(UTC).date()
    last = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=UTC)
    query["period1"] = str(int(first.timestamp()))
    query["period2"] = str(int(last.timestamp()))
    return query


async def fetch_market_data(
    ctx: TaskContext,
    *,
    symbols: list[str],
    period: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> dict[str, Any]:
    """Fetch and store daily bars for `symbols`; report progress per symbol."""
    query = chart_query(period=period, start=start, end=end)
    gate = asyncio.Semaphore(CONCURRENCY)
    failed: list[dict[str, str]] = []
    rows_written = 0
    done = 0

    async def one(symbol: str) -> None:
        nonlocal rows_written, done
        async with gate:
            try:
                url = f"{ctx.settings.yahoo_base_url}/v8/finance/chart/{symbol}"
                async with ctx.session.get(url, params=query) as response:
                    body = await response.read()
                    status = response.status
                if status >= 500 or status == 429:
                    raise ChartError.transient(f"HTTP {status}")
                chart = parse_chart(body, status=status)
                async with ctx.pool.acquire() as connection:
                    rows_written += await upsert_bars(
                        connection, bar_rows(symbol, chart.bars, source="yahoo")
                    )
            except ChartError as exc:
                failed.append({"symbol": symbol, "reason": f"{exc.kind}: {exc}"})
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed.append({"symbol": symbol, "reason": f"network: {exc!r}"})
            done += 1
            await ctx.report_progress(current=done, total=len(symbols), message=symbol)

    await asyncio.gather(*(one(symbol) for symbol in symbols))
    failed.sort(key=lambda item: item["symbol"])
    log.info(
        "market data fetched", requested=len(symbols), failed=len(failed), rows_written=rows_written
    )
    return {
        "requested": len(symbols),
        "fetched": len(symbols) - len(failed),
        "rows_written": rows_written,
        "failed": failed,
    }
