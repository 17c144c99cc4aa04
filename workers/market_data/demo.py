"""The foundation's demo task: fetch one symbol's chart, store its bars, optionally linger.

It proves the whole path (Celery → async body on the process loop → aiohttp
→ asyncpg) and, with `hold_seconds`, gives cancellation tests a running task.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from service.core.contracts import DemoFetch
from service.core.logs import get_logger
from workers.market_data.providers.yahoo_chart import parse_chart
from workers.market_data.store import bar_rows, upsert_bars
from workers.runtime import TaskContext

log = get_logger(__name__)


async def demo_fetch(ctx: TaskContext, task: DemoFetch) -> dict[str, Any]:
    """Fetch the symbol's daily chart, upsert its bars, then hold for `hold_seconds`."""
    symbol, period, hold_seconds = task.symbol, task.period, task.hold_seconds
    url = f"{ctx.settings.yahoo_base_url}/v8/finance/chart/{symbol}"
    async with ctx.session.get(url, params={"range": period, "interval": "1d"}) as response:
        body = await response.read()
        status = response.status
    chart = parse_chart(body, status=status)
    async with ctx.pool.acquire() as connection:
        changed = await upsert_bars(connection, bar_rows(symbol, chart.bars, source="yahoo"))
    log.info("demo bars stored", symbol=symbol, bars=len(chart.bars), changed=changed)
    steps = int(hold_seconds * 10)
    for step in range(steps):
        await ctx.report_progress(current=step + 1, total=steps, message="holding")
        await asyncio.sleep(0.1)
    return {
        "symbol": symbol,
        "bars": len(chart.bars),
        "rows_changed": changed,
        "pid": os.getpid(),
        "session_id": id(ctx.session),
        "pool_id": id(ctx.pool),
    }
