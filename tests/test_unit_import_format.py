"""Transaction files: CSV and Ghostfolio JSON parsing, content keys and CSV export."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal as D  # noqa: N817 - short for dense tables
from pathlib import Path
from typing import Any

import pytest

from service.portfolio.import_format import (
    CSV_COLUMNS,
    MAX_ROWS,
    ImportRefused,
    TooManyRows,
    content_key,
    new_rows,
    parse_csv,
    parse_date,
    parse_ghostfolio,
    to_csv,
)
from service.portfolio.positions import Transaction

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples"
HEADER = ",".join(CSV_COLUMNS)


def _one(text: str) -> dict[str, Any]:
    rows = parse_csv(text)
    assert len(rows) == 1
    tx = rows[0].transaction
    return {
        name: getattr(tx, name)
        for name in ("type", "date", "symbol", "quantity", "price", "amount", "fee", "currency")
        if getattr(tx, name) not in (None, D(0))
    }


def _refused(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ImportRefused) as raised:
        parse_csv(text)
    return [(error.location, error.field) for error in raised.value.errors]


class TestCsvHeaders:
    @pytest.mark.parametrize(
        "header",
        [
            "date,type,symbol,quantity,price,fee",
            "DATE,Type,Symbol,QUANTITY,Price,Fee",
            "Date,Action,Ticker,Shares,UnitPrice,Commission",
            "tradeDate,buy/sell,code,qty,tradePrice,ibCommission",
            "date,type,symbol,units,unitPrice,fee,dataSource,account",
            " date , type ,symbol,quantity,price,fee",
        ],
    )
    def test_aliases_and_case(self, header: str) -> None:
        """Our names and Ghostfolio's are accepted in any case; dataSource/account ignored."""
        extra = ",YAHOO,acc" if "dataSource" in header else ""
        row = f"2024-01-02,buy,aapl,10,185.5,1{extra}"
        assert _one(f"{header}\n{row}\n") == {
            "type": "BUY",
            "date": date(2024, 1, 2),
            "symbol": "AAPL",
            "quantity": D(10),
            "price": D("185.5"),
            "fee": D(1),
        }

    def test_columns_in_any_order_and_comment_is_the_note(self) -> None:
        """Columns are matched by name; `comment` fills the note and `ccy` the currency."""
        rows = parse_csv("comment,ccy,amount,type,date\nfirst pay,eur,100,DEPOSIT,2024-01-02\n")
        tx = rows[0].transaction
        assert (tx.type, tx.amount, tx.currency, tx.note) == ("DEPOSIT", D(100), "EUR", "first pay")

    @pytest.mark.parametrize(
        ("text", "errors"),
        [
            ("", [("line 1", "")]),
            ("symbol,quantity\nAAPL,1\n", [("line 1", "date"), ("line 1", "type")]),
            ("date,type,amount,value\n", [("line 1", "value")]),
            ("date,type,note,comment\n", [("line 1", "comment")]),
            ("date,type,amount\n\n", [("line 2", "")]),
        ],
        ids=["empty", "no-date-or-type", "unknown-column", "two-note-columns", "header-only"],
    )
    def test_bad_headers_are_named(self, text: str, errors: list[tuple[str, str]]) -> None:
        """A missing, unknown or doubled column is refused naming it on line 1, and a file
        with no row after its header on line 2."""
        assert _refused(text) == errors

    @pytest.mark.parametrize(
        "text",
        [
            "\ufeffdate,type,amount\n2024-01-02,DEPOSIT,5\n",
            "date;type;amount\r\n2024-01-02;DEPOSIT;5\r\n",
            "date\ttype\tamount\n2024-01-02\tDEPOSIT\t5\n\n\n",
        ],
        ids=["bom", "semicolons-crlf", "tabs-blank-lines"],
    )
    def test_bom_separators_and_blank_lines(self, text: str) -> None:
        """A BOM is ignored, the header's separator is used, blank lines are skipped."""
        assert _one(text) == {"type": "DEPOSIT", "date": date(2024, 1, 2), "amount": D(5)}


class TestCsvRows:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("2024-03-05", date(2024, 3, 5)),
            ("2024/03/05", date(2024, 3, 5)),
            ("2024.03.05", date(2024, 3, 5)),
            ("20240305", date(2024, 3, 5)),
            ("05-03-2024", date(2024, 3, 5)),
            ("05/03/2024", date(2024, 3, 5)),
            ("05.03.2024", date(2024, 3, 5)),
            ("2024-03-05T00:00:00.000Z", date(2024, 3, 5)),
            ("2024-03-04T23:00:00+01:00", date(2024, 3, 4)),
            ("2024-03-05 10:30", date(2024, 3, 5)),
            ("03/05/24", None),
            ("5 March 2024", None),
            ("2024-02-30", None),
        ],
    )
    def test_date_formats(self, text: str, expected: date | None) -> None:
        """Ghostfolio's formats (day first when the year is last) and ISO date-times, whose
        date is taken as written; anything else is no date."""
        assert parse_date(text) == expected

    @pytest.mark.parametrize(
        ("row", "expected"),
        [
            ("DIVIDEND,KO,,,12.4,", {"type": "DIVIDEND", "symbol": "KO", "amount": D("12.4")}),
            # Ghostfolio: a dividend is shares x amount per share, a fee's amount is in `fee`.
            ("DIVIDEND,KO,10,0.46,,", {"type": "DIVIDEND", "symbol": "KO", "amount": D("4.6")}),
            ("FEE,,0,0,,25", {"type": "FEE", "amount": D(25)}),
            ("fee,,,,7.5,", {"type": "FEE", "amount": D("7.5")}),
            ("Withdrawal,,,,100,", {"type": "WITHDRAWAL", "amount": D(100)}),
            (
                "SELL,MSFT,2,400,,0.5",
                {
                    "type": "SELL",
                    "symbol": "MSFT",
                    "quantity": D(2),
                    "price": D(400),
                    "fee": D("0.5"),
                },
            ),
        ],
    )
    def test_types(self, row: str, expected: dict[str, Any]) -> None:
        """Every findash type reads, in any case, with Ghostfolio's conventions for
        dividends and fees."""
        text = f"date,type,symbol,quantity,price,amount,fee\n2024-01-02,{row}\n"
        assert _one(text) == {"date": date(2024, 1, 2), **expected}

    @pytest.mark.parametrize(
        ("row", "field", "message"),
        [
            ("INTEREST,,,,5,", "type", "INTEREST is not a findash type"),
            ("LIABILITY,,,,5,", "type", "LIABILITY is not a findash type"),
            ("GIFT,,,,5,", "type", "unknown type 'GIFT'"),
            (",,,,5,", "type", "required"),
            ("BUY,AAPL,1,,,", "price", "required for BUY"),
            ("BUY,,1,2,,", "symbol", "required for BUY"),
            ("BUY,AAPL,-1,2,,", "quantity", "must be greater than 0"),
            ("BUY,AAPL,1,2,,-1", "fee", "must not be negative"),
            ("BUY,AAPL,1,2x,,", "price", "not a number: '2x'"),
            ("BUY,AAPL,1,NaN,,", "price", "not a finite number"),
            ("BUY,AAPL,1e-11,2,,", "quantity", "at most 10 decimal places"),
            ("BUY,AA PL,1,2,,", "symbol", "matching regex"),
            ("DEPOSIT,,,,1e13,", "amount", "finite number below"),
            ("DEPOSIT,,3,,5,", "quantity", "not used by DEPOSIT"),
        ],
    )
    def test_bad_values_name_line_and_column(self, row: str, field: str, message: str) -> None:
        """A bad value is refused naming its line (the header is line 1) and column."""
        header = "date,type,symbol,quantity,price,amount,fee"
        text = f"{header}\n2024-01-02,DEPOSIT,,,,1,\n2024-01-03,{row}\n"
        with pytest.raises(ImportRefused) as raised:
            parse_csv(text)
        [error] = raised.value.errors
        assert (error.location, error.field) == ("line 3", field)
        assert message in error.message
        assert str(raised.value).startswith(f"line 3, {field}: ")

    @pytest.mark.parametrize(
        ("row", "field"),
        [
            ("1999-13-01,DEPOSIT,5", "date"),
            ("1969-12-31,DEPOSIT,5", "date"),
            ("2024-01-02,DEPOSIT,5,x", ""),
        ],
        ids=["bad-month", "before-1970", "too-many-cells"],
    )
    def test_dates_and_cells(self, row: str, field: str) -> None:
        """Impossible or out-of-range dates and rows longer than the header are refused."""
        assert _refused(f"date,type,amount\n{row}\n") == [("line 2", field)]

    def test_a_quoted_newline_counts_toward_later_line_numbers(self) -> None:
        """A note spanning two physical lines keeps the next row's line number true."""
        text = 'date,type,amount,note\n2024-01-02,DEPOSIT,5,"two\nlines"\n2024-01-03,GIFT,5,\n'
        assert _refused(text) == [("line 4", "type")]

    def test_every_bad_line_is_reported_up_to_a_limit(self) -> None:
        """All bad lines are named (at most 20), not only the first."""
        bad = "\n".join(["2024-01-02,GIFT,5"] * 30)
        errors = _refused(f"date,type,amount\n{bad}\n")
        assert len(errors) == 20
        assert errors[:2] == [("line 2", "type"), ("line 3", "type")]

    def test_nul_in_a_note_is_refused(self) -> None:
        """A NUL (which Postgres text cannot hold) is refused naming the note."""
        assert _refused("date,type,amount,note\n2024-01-02,DEPOSIT,5,a\x00b\n") == [
            ("line 2", "note")
        ]

    def test_row_limit(self) -> None:
        """MAX_ROWS rows import; one more is TooManyRows."""
        rows = "2024-01-02,DEPOSIT,1\n" * MAX_ROWS
        assert len(parse_csv(f"date,type,amount\n{rows}")) == MAX_ROWS
        with pytest.raises(TooManyRows):
            parse_csv(f"date,type,amount\n{rows}2024-01-02,DEPOSIT,1\n")


class TestGhostfolio:
    def test_example_export(self) -> None:
        """Ghostfolio's export reads: unitPrice is the price, comment the note, a manual fee's
        made-up symbol is dropped, ISO date-times keep their date, other keys are ignored."""
        rows = parse_ghostfolio((EXAMPLES / "ghostfolio-export.json").read_bytes())
        shown = [
            (
                r.location,
                r.transaction.type,
                r.transaction.symbol,
                r.transaction.quantity,
                r.transaction.price,
                r.transaction.amount,
                r.transaction.fee,
                r.transaction.currency,
                r.transaction.note,
            )
            for r in rows
        ]
        assert shown == [
            ("activities[0]", "BUY", "MSFT", D(5), D("298.5"), None, D("4.95"), "USD", "first buy"),
            ("activities[1]", "DIVIDEND", "MSFT", None, None, D("3.4"), D(0), "USD", None),
            ("activities[2]", "FEE", None, None, None, D(12), D(0), "USD", "custody"),
            ("activities[3]", "SELL", "MSFT", D(2), D("330.1"), None, D("4.95"), "USD", None),
        ]
        assert [r.transaction.date for r in rows] == [
            date(2023, 1, 3),
            date(2023, 3, 9),
            date(2023, 6, 30),
            date(2023, 9, 1),
        ]

    @pytest.mark.parametrize(
        ("body", "location", "field"),
        [
            (b"{}", "body", ""),
            (b"[1]", "body", ""),
            (b"{nope", "body", ""),
            (b'{"activities": [{"type": "BUY"}]}', "activities[0]", ""),
            (b'{"activities": [{"type": "BUY", "date": 3}]}', "activities[0]", "date"),
            (
                b'{"activities": [{"type": "BUY", "date": "2023-01-03", "symbol": "A",'
                b' "quantity": 1, "unitPrice": "x"}]}',
                "activities[0]",
                "unitPrice",
            ),
            (
                b'{"activities": [{"type": "INTEREST", "date": "2023-01-03", "quantity": 1,'
                b' "unitPrice": 2}]}',
                "activities[0]",
                "type",
            ),
            (
                b'{"activities": [{"type": "BUY", "date": "2023-01-03", "symbol": "A",'
                b' "quantity": 1, "unitPrice": -2}]}',
                "activities[0]",
                "unitPrice",
            ),
            (b'{"activities": []}', "activities", ""),
        ],
    )
    def test_bad_activities_are_named(self, body: bytes, location: str, field: str) -> None:
        """A bad export or activity is refused naming `activities[i]` and the key as
        Ghostfolio spells it."""
        with pytest.raises(ImportRefused) as raised:
            parse_ghostfolio(body)
        error = raised.value.errors[0]
        assert (error.location, error.field) == (location, field), error

    def test_activity_limit(self) -> None:
        """More than MAX_ROWS activities is TooManyRows."""
        one = {"type": "FEE", "date": "2023-01-03", "fee": 1}
        with pytest.raises(TooManyRows):
            parse_ghostfolio(json.dumps({"activities": [one] * (MAX_ROWS + 1)}).encode())


def _tx(id_: int, **fields: Any) -> Transaction:
    return Transaction(id=id_, **fields)


class TestKeysAndExport:
    def test_content_key_ignores_trailing_zeros_and_reads_every_column(self) -> None:
        """A stored 10.000000 and a typed 10 are the same row; any other column differs."""
        stored = _tx(
            1,
            type="BUY",
            date=date(2024, 1, 2),
            symbol="A",
            quantity=D("10.0000000000"),
            price=D("2.500000"),
            fee=D("0.000000"),
        )
        typed = parse_csv("date,type,symbol,quantity,price\n2024-01-02,BUY,a,10,2.5\n")
        assert content_key(stored) == content_key(typed[0].transaction)
        for change in ({"note": "x"}, {"currency": "EUR"}, {"fee": D(1)}, {"price": D(2)}):
            other = _tx(1, **{**_fields(stored), **change})
            assert content_key(other) != content_key(stored), change

    def test_new_rows_counts_identical_rows_per_occurrence(self) -> None:
        """Two identical rows in a file both import; again, both are duplicates; a longer
        file adds only its new occurrences."""
        line = "2024-01-02,BUY,A,1,2\n"
        twice = parse_csv(f"date,type,symbol,quantity,price\n{line}{line}")
        fresh, duplicates = new_rows(twice, [])
        assert (len(fresh), duplicates) == (2, 0)
        recorded = [row.transaction for row in twice]
        assert new_rows(twice, recorded) == ([], 2)
        thrice = parse_csv(f"date,type,symbol,quantity,price\n{line}{line}{line}")
        fresh, duplicates = new_rows(thrice, recorded)
        assert ([r.location for r in fresh], duplicates) == (["line 4"], 2)

    @pytest.mark.parametrize(
        ("stored", "rates", "fresh"),
        [
            (["1.1000000000"], [None], []),
            (["1.1000000000"], ["1.10"], []),
            (["1.1000000000"], ["1.2"], ["line 2"]),
            ([None], [None], []),
            ([None], ["1.1"], ["line 2"]),
            ([], ["1.1"], ["line 2"]),
            (["1.1", "1.2"], [None, "1.1"], []),
            (["1.1"], [None, "1.1"], ["line 2"]),
            (["1.1", "1.1"], ["1.1", None, None], ["line 4"]),
        ],
        ids=[
            "no-rate-matches-any",
            "same-rate",
            "other-rate",
            "neither-has-one",
            "rate-against-none",
            "nothing-stored",
            "rated-rows-match-first",
            "only-one-at-that-rate",
            "per-occurrence",
        ],
    )
    def test_new_rows_match_the_booked_rate(
        self, stored: list[str | None], rates: list[str | None], fresh: list[str]
    ) -> None:
        """A row with fx_rate duplicates only a transaction booked at that rate (trailing
        zeros ignored), a row without one a transaction at any rate, once per occurrence."""
        trade = {"type": "BUY", "date": date(2024, 1, 2), "symbol": "A", "currency": "EUR"}
        existing = [
            _tx(i, **trade, quantity=D(1), price=D(2), fx_rate=None if r is None else D(r))
            for i, r in enumerate(stored)
        ]
        lines = "".join(f"2024-01-02,BUY,A,1,2,EUR,{r or ''}\n" for r in rates)
        rows = parse_csv(f"date,type,symbol,quantity,price,currency,fx_rate\n{lines}")
        new, duplicates = new_rows(rows, existing)
        assert ([row.location for row in new], duplicates) == (fresh, len(rates) - len(fresh))

    @pytest.mark.parametrize(
        ("cell", "rate", "message"),
        [
            ("1.0850", D("1.085"), None),
            ("", None, None),
            ("0", None, "must be greater than 0"),
            ("1e-11", None, "at most 10 decimal places"),
            ("x", None, "not a number: 'x'"),
        ],
    )
    def test_fx_rate_column(self, cell: str, rate: D | None, message: str | None) -> None:
        """`fx_rate` (any case) is the booked rate, empty means the stored one, and a bad
        one is refused naming the column as written."""
        header = "date,type,symbol,quantity,price,currency,FX_Rate"
        text = f"{header}\n2024-01-02,BUY,A,1,2,EUR,{cell}\n"
        if message is None:
            assert parse_csv(text)[0].transaction.fx_rate == rate
            return
        with pytest.raises(ImportRefused) as raised:
            parse_csv(text)
        [error] = raised.value.errors
        assert (error.location, error.field) == ("line 2", "FX_Rate")
        assert message in error.message

    def test_export_reads_back_to_the_same_rows(self) -> None:
        """to_csv writes what parse_csv reads back identically, quotes and newlines included."""
        txs = [
            _tx(
                1,
                type="DEPOSIT",
                date=date(2024, 1, 2),
                amount=D("1000.000000"),
                note='says "hi", then\nleaves',
            ),
            _tx(
                2,
                type="BUY",
                date=date(2024, 1, 3),
                symbol="VOD.L",
                quantity=D("3.5000000000"),
                price=D("71.200000"),
                fee=D("1.000000"),
                currency="GBp",
                fx_rate=D("1.2634500000"),
            ),
            _tx(3, type="FEE", date=date(2024, 1, 4), symbol="VOD.L", amount=D("0.5")),
        ]
        text = to_csv(txs)
        assert text.splitlines()[0] == HEADER
        assert text.splitlines()[3] == "2024-01-03,BUY,VOD.L,3.5,71.2,,1,GBp,,1.26345"
        back = [row.transaction for row in parse_csv(text)]
        assert [content_key(t) for t in back] == [content_key(t) for t in txs]
        assert [t.fx_rate for t in back] == [None, D("1.26345"), None]
        assert new_rows(parse_csv(text), txs) == ([], 3)
        assert back[0].note == 'says "hi", then\nleaves'

    def test_example_csv_reads(self) -> None:
        """docs/examples/transactions.csv imports and uses every type."""
        rows = parse_csv((EXAMPLES / "transactions.csv").read_text())
        assert {row.transaction.type for row in rows} == {
            "BUY",
            "SELL",
            "DIVIDEND",
            "DEPOSIT",
            "WITHDRAWAL",
            "FEE",
        }


def _fields(tx: Transaction) -> dict[str, Any]:
    return {name: getattr(tx, name) for name in Transaction.__slots__ if name != "id"}
