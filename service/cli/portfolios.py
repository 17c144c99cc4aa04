"""`findash portfolios …`: portfolios and their transactions, holdings and results.

Plain API calls; the root command puts `request(method, path, body=None)` and
`request_raw(method, path, data, content_type)` (both exit 2 with the problem when the API
refuses) and `print(value)` in the context, so this module needs nothing else from the CLI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

TX_TYPES = ("BUY", "SELL", "DIVIDEND", "DEPOSIT", "WITHDRAWAL", "FEE")


def _request(ctx: click.Context, method: str, path: str, body: Any = None) -> Any:
    return ctx.obj["request"](method, f"/api/v1/portfolios{path}", body)


@click.group("portfolios")
def portfolios_group() -> None:
    """Your portfolios: create them, record transactions, read holdings and results."""


@portfolios_group.command("list")
@click.pass_context
def list_portfolios(ctx: click.Context) -> None:
    """Every portfolio of yours."""
    ctx.obj["print"](_request(ctx, "GET", "/"))


@portfolios_group.command("create")
@click.argument("name")
@click.option("--currency", "base_currency", default="USD", show_default=True)
@click.pass_context
def create(ctx: click.Context, name: str, base_currency: str) -> None:
    """Create a portfolio; prints it with its id."""
    body = {"name": name, "base_currency": base_currency}
    ctx.obj["print"](_request(ctx, "POST", "/", body))


@portfolios_group.command("delete")
@click.argument("portfolio_id", type=int)
@click.pass_context
def delete(ctx: click.Context, portfolio_id: int) -> None:
    """Delete a portfolio with everything recorded and computed for it."""
    _request(ctx, "DELETE", f"/{portfolio_id}")
    ctx.obj["print"]({"deleted": portfolio_id})


@portfolios_group.command("add-tx")
@click.argument("portfolio_id", type=int)
@click.argument("tx_type", metavar="TYPE", type=click.Choice(TX_TYPES, case_sensitive=False))
@click.argument("date")
@click.option("-s", "--symbol")
@click.option("-q", "--quantity", type=float)
@click.option("--price", type=float)
@click.option("--amount", type=float)
@click.option("--fee", type=float)
@click.pass_context
def add_transaction(
    ctx: click.Context,
    portfolio_id: int,
    tx_type: str,
    date: str,
    symbol: str | None,
    quantity: float | None,
    price: float | None,
    amount: float | None,
    fee: float | None,
) -> None:
    """Record a transaction, e.g. `add-tx 1 BUY 2024-01-02 -s AAPL -q 10 --price 185.5`."""
    fields = {"symbol": symbol, "quantity": quantity, "price": price, "amount": amount, "fee": fee}
    body: dict[str, Any] = {"type": tx_type.upper(), "date": date}
    body.update({name: value for name, value in fields.items() if value is not None})
    ctx.obj["print"](_request(ctx, "POST", f"/{portfolio_id}/transactions", body))


@portfolios_group.command("transactions")
@click.argument("portfolio_id", type=int)
@click.pass_context
def transactions(ctx: click.Context, portfolio_id: int) -> None:
    """The portfolio's transactions in the order they apply."""
    ctx.obj["print"](_request(ctx, "GET", f"/{portfolio_id}/transactions"))


@portfolios_group.command("import")
@click.argument("portfolio_id", type=int)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.pass_context
def import_transactions(ctx: click.Context, portfolio_id: int, file: Path) -> None:
    """Import a CSV file (docs/API.md) or a Ghostfolio export (`.json`): every row or none;
    rows already recorded are skipped. Prints how many were imported and skipped."""
    data = file.read_bytes()
    is_json = file.suffix.lower() == ".json" or data.lstrip().startswith(b"{")
    content_type = "application/json" if is_json else "text/csv"
    path = f"/api/v1/portfolios/{portfolio_id}/transactions/import"
    answer = ctx.obj["request_raw"]("POST", path, data, content_type)
    ctx.obj["print"](json.loads(answer))


@portfolios_group.command("export")
@click.argument("portfolio_id", type=int)
@click.pass_context
def export_transactions(ctx: click.Context, portfolio_id: int) -> None:
    """Write the portfolio's transactions to stdout as CSV, in the format `import` reads."""
    path = f"/api/v1/portfolios/{portfolio_id}/transactions?format=csv"
    sys.stdout.buffer.write(ctx.obj["request_raw"]("GET", path))
    sys.stdout.buffer.flush()


@portfolios_group.command("delete-tx")
@click.argument("portfolio_id", type=int)
@click.argument("transaction_id", type=int)
@click.pass_context
def delete_transaction(ctx: click.Context, portfolio_id: int, transaction_id: int) -> None:
    """Delete one transaction (refused if a later one relies on it)."""
    _request(ctx, "DELETE", f"/{portfolio_id}/transactions/{transaction_id}")
    ctx.obj["print"]({"deleted": transaction_id})


@portfolios_group.command("holdings")
@click.argument("portfolio_id", type=int)
@click.option("--as-of", help="YYYY-MM-DD (default: today)")
@click.pass_context
def holdings(ctx: click.Context, portfolio_id: int, as_of: str | None) -> None:
    """Positions and cash at the newest prices (quote or close), each flagged when stale."""
    query = f"?as_of={as_of}" if as_of else ""
    ctx.obj["print"](_request(ctx, "GET", f"/{portfolio_id}/holdings{query}"))


@portfolios_group.command("performance")
@click.argument("portfolio_id", type=int)
@click.pass_context
def performance(ctx: click.Context, portfolio_id: int) -> None:
    """The latest result of `calculate-performance` for the portfolio."""
    ctx.obj["print"](_request(ctx, "GET", f"/{portfolio_id}/performance"))
