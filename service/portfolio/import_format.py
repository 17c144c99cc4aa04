"""Transaction files: CSV and Ghostfolio's activity export in, CSV out (pure).

A CSV has a header row naming its columns, case-insensitively, in any order: ours
(`CSV_COLUMNS`) or Ghostfolio's names for them (`ALIASES`). Each row becomes a
`TransactionCreate`, validated exactly like a POSTed one. A file is refused as a whole
(`ImportRefused`, each error naming its line or `activities[i]` and its field) or not at all.

`content_key` is the content hash of a transaction: what makes two rows "the same row" when
a file is imported again. The booked `fx_rate` is not in it: a file row without a rate takes
the stored one when it is recorded, so it must match a stored row whatever its rate, and a
row with one matches only a transaction booked at it (`new_rows`).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from service.portfolio.positions import Transaction, plain
from service.portfolio.schemas import TransactionCreate

# The nine columns keep their order (a reader of the export by position still
# works); `fx_rate`, the rate a foreign row was booked at, comes last.
CSV_COLUMNS = (
    "date",
    "type",
    "symbol",
    "quantity",
    "price",
    "amount",
    "fee",
    "currency",
    "note",
    "fx_rate",
)
MAX_ROWS = 10_000
MAX_ERRORS = 20
# Header names (lower case) accepted for each column: ours first, then Ghostfolio's
# (apps/client/src/app/services/import-activities.service.ts). Ghostfolio's `value` is left
# out: other brokers use it for a row's total, and reading a total as a unit price is silent.
ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "tradedate"),
    "type": ("type", "action", "buy/sell"),
    "symbol": ("symbol", "ticker", "code"),
    "quantity": ("quantity", "qty", "shares", "units"),
    "price": ("price", "unitprice", "tradeprice"),
    "amount": ("amount",),
    "fee": ("fee", "commission", "ibcommission"),
    "currency": ("currency", "ccy", "currencyprimary"),
    "note": ("note", "comment"),
    "fx_rate": ("fx_rate", "fxrate"),
}
# Ghostfolio columns that mean nothing here: findash has no accounts or data sources.
IGNORED_COLUMNS = frozenset({"datasource", "account", "accountid"})
_BY_HEADER = {alias: column for column, aliases in ALIASES.items() for alias in aliases}
TYPES = frozenset({"BUY", "SELL", "DIVIDEND", "DEPOSIT", "WITHDRAWAL", "FEE"})
_REFUSED_TYPES = {
    "INTEREST": "INTEREST is not a findash type: record interest received as DEPOSIT (cash "
    "in, counted as money added) or leave the row out",
    "LIABILITY": "LIABILITY is not a findash type: findash records no liabilities; leave "
    "the row out",
}
# Ghostfolio's date formats (libs/common/src/lib/helper.ts): day first when the year is last.
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y%m%d", "%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y")
_ISO_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2})[T ]\d{2}:\d{2}")
_MSGSPEC_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_PREFIX = re.compile(r"^(?P<field>[a-z_]+): (?P<message>.+)$", re.DOTALL)
_NUMBERS = ("quantity", "price", "amount", "fee")
_MINOR_UNITS = frozenset({"GBp", "ZAc"})


@dataclass(frozen=True, slots=True)
class RowError:
    """What is wrong where: `location` is `line 3` or `activities[2]`, `field` the column or
    key as the file spells it (empty for the whole row or file)."""

    location: str
    field: str
    message: str

    @property
    def path(self) -> str:
        """`line 3.price`, `activities[2].unitPrice`, or the location alone."""
        return f"{self.location}.{self.field}" if self.field else self.location


class ImportRefused(ValueError):
    """The file cannot be imported; nothing of it may be stored."""

    def __init__(self, errors: list[RowError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        field = f", {first.field}" if first.field else ""
        super().__init__(f"{first.location}{field}: {first.message}{more}")
        self.errors = errors


class TooManyRows(ValueError):
    """More rows than one import takes."""


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One transaction of a file and where it was (`line 3`, `activities[2]`)."""

    location: str
    transaction: TransactionCreate


def parse_csv(text: str) -> list[ImportRow]:
    """The rows of a CSV file (a leading BOM is ignored; `,`, `;` or tab separated, as the
    header line shows), or ImportRefused naming every bad line (up to MAX_ERRORS)."""
    text = text.removeprefix("\ufeff")
    header_line = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=header_line.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise ImportRefused([RowError("line 1", "", "empty file: a header row is required")])
        columns = _columns(header)
        rows: list[ImportRow] = []
        errors: list[RowError] = []
        line = reader.line_num + 1
        for cells in reader:
            location = f"line {line}"
            line = reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) + len(errors) >= MAX_ROWS:
                raise TooManyRows(f"more than {MAX_ROWS:,} rows")
            if len(cells) > len(header):
                errors.append(
                    RowError(location, "", f"{len(cells)} cells but the header has {len(header)}")
                )
                continue
            raw = {column: cells[i] for column, (i, _) in columns.items() if i < len(cells)}
            names = {column: name for column, (_, name) in columns.items()}
            _collect(rows, errors, location, raw, names)
            if len(errors) >= MAX_ERRORS:
                break
    except csv.Error as exc:
        raise ImportRefused([RowError(f"line {reader.line_num}", "", f"not CSV: {exc}")]) from None
    if errors:
        raise ImportRefused(errors)
    if not rows:
        raise ImportRefused([RowError("line 2", "", "no transactions after the header row")])
    return rows


def _columns(header: list[str]) -> dict[str, tuple[int, str]]:
    """Each known column's index and its name as the header spells it."""
    found: dict[str, tuple[int, str]] = {}
    errors: list[RowError] = []
    for index, cell in enumerate(header):
        name = cell.strip()
        key = name.lower()
        if key in IGNORED_COLUMNS:
            continue
        column = _BY_HEADER.get(key)
        if column is None:
            errors.append(
                RowError("line 1", name, f"unknown column; expected {', '.join(CSV_COLUMNS)}")
            )
        elif column in found:
            errors.append(
                RowError("line 1", name, f"a second column for {column} ({found[column][1]})")
            )
        else:
            found[column] = (index, name)
    for column in ("date", "type"):
        if column not in found:
            errors.append(RowError("line 1", column, "required column missing"))
    if errors:
        raise ImportRefused(errors)
    return found


class _Activity(msgspec.Struct):
    """A Ghostfolio activity; its other keys (accountId, dataSource, tags, …) are ignored."""

    date: str
    type: str
    symbol: str | None = None
    quantity: Decimal | None = None
    unitPrice: Decimal | None = None  # noqa: N815 - Ghostfolio's name
    fee: Decimal | None = None
    currency: str | None = None
    comment: str | None = None
    dataSource: str | None = None  # noqa: N815 - Ghostfolio's name


class _Export(msgspec.Struct):
    activities: list[_Activity]


GHOSTFOLIO_NAMES = {
    "date": "date",
    "type": "type",
    "symbol": "symbol",
    "quantity": "quantity",
    "price": "unitPrice",
    "amount": "amount",
    "fee": "fee",
    "currency": "currency",
    "note": "comment",
}


def parse_ghostfolio(body: bytes) -> list[ImportRow]:
    """The activities of a Ghostfolio export (`{"activities": [...]}`; its accounts,
    platforms, tags and asset profiles are ignored), or ImportRefused naming each bad one."""
    try:
        export = msgspec.json.decode(body, type=_Export)
    except msgspec.ValidationError as exc:
        match = _MSGSPEC_PATH.match(str(exc))
        path = (match["path"] if match else "") or ""
        location, _, field = path.partition("].")
        location = f"{location}]" if field else path or "body"
        message = match["message"] if match else str(exc)
        raise ImportRefused([RowError(location, field, message)]) from None
    except msgspec.DecodeError as exc:
        raise ImportRefused([RowError("body", "", f"not JSON: {exc}")]) from None
    if len(export.activities) > MAX_ROWS:
        raise TooManyRows(f"more than {MAX_ROWS:,} activities")
    if not export.activities:
        raise ImportRefused([RowError("activities", "", "no activities")])
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    for index, activity in enumerate(export.activities):
        raw: dict[str, str | Decimal | None] = {
            "date": activity.date,
            "type": activity.type,
            "symbol": activity.symbol,
            "quantity": activity.quantity,
            "price": activity.unitPrice,
            "fee": activity.fee,
            "currency": activity.currency,
            "note": activity.comment,
        }
        if activity.dataSource == "MANUAL" and activity.type.upper() == "FEE":
            raw["symbol"] = None  # Ghostfolio's made-up id of a manual fee, not a symbol
        _collect(rows, errors, f"activities[{index}]", raw, GHOSTFOLIO_NAMES)
        if len(errors) >= MAX_ERRORS:
            break
    if errors:
        raise ImportRefused(errors)
    return rows


def _collect(
    rows: list[ImportRow],
    errors: list[RowError],
    location: str,
    raw: Mapping[str, str | Decimal | None],
    names: Mapping[str, str],
) -> None:
    try:
        rows.append(ImportRow(location, _transaction(raw)))
    except _FieldError as exc:
        errors.append(RowError(location, names.get(exc.column, exc.column), exc.message))


class _FieldError(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def _transaction(raw: Mapping[str, str | Decimal | None]) -> TransactionCreate:
    """One row's values as a validated TransactionCreate, or _FieldError naming the column."""
    values = {name: _blank_to_none(value) for name, value in raw.items()}
    if isinstance(note := raw.get("note"), str) and note.strip():
        values["note"] = note  # kept as written, so an export imports back exactly
    tx_type = _type(values.get("type"))
    fields: dict[str, Any] = {"type": tx_type, "date": _date(values.get("date"))}
    numbers = {name: _number(name, values.get(name)) for name in _NUMBERS}
    quantity, price, amount = numbers["quantity"], numbers["price"], numbers["amount"]
    if tx_type not in {"BUY", "SELL"}:
        # Ghostfolio writes 0 for the quantity and unit price a type does not use, a dividend
        # as shares x amount per share, and a fee's amount in `fee`.
        if tx_type == "DIVIDEND" and amount is None and quantity and price:
            amount, quantity, price = quantity * price, None, None
        if tx_type == "FEE" and amount is None and numbers["fee"]:
            amount, numbers["fee"] = numbers["fee"], None
        quantity = quantity or None
        price = price or None
    numbers.update(quantity=quantity, price=price, amount=amount)
    numbers["fx_rate"] = _number("fx_rate", values.get("fx_rate"))
    fields.update({name: value for name, value in numbers.items() if value is not None})
    for name in ("symbol", "note"):
        if (value := values.get(name)) is not None:
            fields[name] = str(value)
    if (currency := values.get("currency")) is not None:
        text = str(currency)
        fields["currency"] = text if text in _MINOR_UNITS else text.upper()
    try:
        return msgspec.convert(fields, TransactionCreate)
    except msgspec.ValidationError as exc:
        match = _MSGSPEC_PATH.match(str(exc))
        message = match["message"] if match else str(exc)
        column = (match["path"] if match else "") or ""
        prefixed = _FIELD_PREFIX.match(message)
        if prefixed is not None and not column:
            column, message = prefixed["field"], prefixed["message"]
        raise _FieldError(column, message) from None


def _blank_to_none(value: str | Decimal | None) -> str | Decimal | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def _type(value: str | Decimal | None) -> str:
    if value is None:
        raise _FieldError("type", "required")
    name = str(value).upper()
    if name in _REFUSED_TYPES:
        raise _FieldError("type", _REFUSED_TYPES[name])
    if name not in TYPES:
        raise _FieldError(
            "type", f"unknown type {str(value)[:40]!r}; expected one of {', '.join(sorted(TYPES))}"
        )
    return name


def parse_date(text: str) -> dt.date | None:
    """A date in one of the accepted formats (ISO date-times keep their date as written,
    whatever the offset), or None."""
    iso = _ISO_DATETIME.match(text)
    if iso is not None:
        text = iso[1]
    for pattern in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def _date(value: str | Decimal | None) -> dt.date:
    if value is None:
        raise _FieldError("date", "required")
    day = parse_date(str(value))
    if day is None:
        raise _FieldError(
            "date", f"not a date: {str(value)[:40]!r}; use YYYY-MM-DD (or DD.MM.YYYY, DD/MM/YYYY)"
        )
    return day


def _number(column: str, value: str | Decimal | None) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _FieldError(column, f"not a number: {value[:40]!r}") from None
    if not number.is_finite():
        raise _FieldError(column, f"not a finite number: {value[:40]!r}")
    return number


def content_key(tx: TransactionCreate | Transaction) -> str:
    """The content hash of a transaction: its type, date, symbol, numbers (trailing zeros
    ignored), currency and note, not its rate. Two transactions with the same key and
    compatible rates (`new_rows`) are the same row."""
    parts = [
        tx.type,
        tx.date.isoformat(),
        tx.symbol or "",
        *(_plain(getattr(tx, name)) for name in _NUMBERS),
        tx.currency or "",
        tx.note or "",
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _plain(value: Decimal | None) -> str:
    return "" if value is None else plain(value)


def new_rows(
    rows: Iterable[ImportRow], existing: Iterable[TransactionCreate | Transaction]
) -> tuple[list[ImportRow], int]:
    """The rows not yet recorded, and how many were: the n-th row of a file with a given
    content key is a duplicate when the portfolio already holds n or more transactions with
    that key. So a file with two identical trades imports both, and importing it again (or
    a file it is part of) adds only what is new. A row giving `fx_rate` is a duplicate only
    of a transaction booked at that rate; a row without one, of one booked at any rate."""
    listed = list(rows)
    held: dict[str, Counter[str]] = {}
    for tx in existing:
        held.setdefault(content_key(tx), Counter())[_plain(tx.fx_rate)] += 1
    duplicate = [False] * len(listed)
    # Rows with a rate first: a row without one must not take the only transaction at it.
    for index in sorted(range(len(listed)), key=lambda i: listed[i].transaction.fx_rate is None):
        tx = listed[index].transaction
        booked = held.get(content_key(tx), Counter())
        rate = (
            _plain(tx.fx_rate)
            if tx.fx_rate is not None
            else next((at for at, count in booked.items() if count), None)
        )
        if rate is not None and booked[rate]:
            booked[rate] -= 1
            duplicate[index] = True
    fresh = [row for row, seen in zip(listed, duplicate, strict=True) if not seen]
    return fresh, sum(duplicate)


def to_csv(transactions: Iterable[Transaction]) -> str:
    """Transactions in the import format (`CSV_COLUMNS`, `\\n` line ends): numbers without
    trailing zeros, empty cells for what a type does not use."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for tx in transactions:
        writer.writerow(
            [
                tx.date.isoformat(),
                tx.type,
                tx.symbol or "",
                *(_plain(getattr(tx, name)) for name in _NUMBERS),
                tx.currency or "",
                tx.note or "",
                _plain(tx.fx_rate),
            ]
        )
    return out.getvalue()
