"""Reading an import file: every line that cannot be read is named by its number, reading goes
on after it, and no line is held whole past the limit."""

from __future__ import annotations

import errno
import io
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from app.errors import BadParams
from app.import_files import csv_documents, ndjson_documents

LIMIT = 64 * 1024


def read(reader: Any, data: bytes, limit: int = LIMIT) -> list[tuple[int, Any]]:
    source = io.BufferedReader(io.BytesIO(data))
    return [
        (line, f"error: {document.message}" if isinstance(document, BadParams) else document)
        for line, document in reader(source, lambda _amount: None, limit=limit)
    ]


def search(query: str, event_id: str) -> dict[str, Any]:
    return {"search": {"query": query, "eventId": event_id}}


HEADER = b"type,query,eventId\n"


def test_csv_rows_are_numbered_by_the_line_they_start_on() -> None:
    data = HEADER + b'search,a,e1\n\nsearch,"two\nlines",e2\nsearch,b,e3\n'
    assert read(csv_documents, data) == [
        (2, search("a", "e1")),
        (4, search("two\nlines", "e2")),
        (6, search("b", "e3")),
    ]


@pytest.mark.parametrize(
    ("bad_line", "limit", "expected"),
    [
        (b"search,x\xff\xfey,e2\n", LIMIT, "the line is not valid UTF-8"),
        (
            b"search," + b"a" * 200_000 + b",e2\n",
            1 << 20,
            "a field is longer than 131072 characters, or a quote is never closed",
        ),
        (b"search,x,e2,extra\n", LIMIT, "4 cells, but the header names 3 columns"),
        (
            b"search," + b"a" * (LIMIT + 10) + b",e2\n",
            LIMIT,
            f"the line is longer than {LIMIT} bytes",
        ),
    ],
    ids=["invalid-utf8", "over-field-limit", "extra-cell", "over-line-limit"],
)
def test_a_csv_line_that_cannot_be_read_is_named_and_reading_goes_on(
    bad_line: bytes, limit: int, expected: str
) -> None:
    data = HEADER + b"search,a,e1\n" + bad_line + b"search,b,e3\n"
    found = read(csv_documents, data, limit=limit)
    assert found[0] == (2, search("a", "e1"))
    assert found[1] == (3, f"error: {expected}")
    assert found[2:] == [(4, search("b", "e3"))]


def test_a_quote_never_closed_is_an_error_not_an_event_holding_the_rest_of_the_file() -> None:
    data = HEADER + b'search,a,e1\nsearch,"b,e2\nsearch,c,e3\nsearch,d,e4\n'
    assert read(csv_documents, data) == [
        (2, search("a", "e1")),
        (3, "error: a quote is never closed: its field runs to the end of the file"),
    ]


def test_a_quote_closed_lines_later_is_an_error_at_the_line_it_opened() -> None:
    data = HEADER + b'search,a,e1\nsearch,"b,e2\nsearch,c,e3\nsearch,"d",e4\nsearch,f,e5\n'
    found = read(csv_documents, data)
    assert found[0] == (2, search("a", "e1"))
    assert found[1] == (3, "error: not valid CSV: ',' expected after '\"'")
    assert (6, search("f", "e5")) in found[2:]  # read again from the line after the error
    assert not any(isinstance(document, dict) and "\n" in str(document) for _, document in found)


def test_a_record_spread_over_lines_is_held_to_the_limit() -> None:
    # Each quoted field is short and each line too; together they are over the limit.
    record = b"search," + b'"\n",' * (LIMIT // 4) + b"e1\n"
    found = read(csv_documents, HEADER + record + b"search,b,e3\n")
    assert found[0][1] == f"error: the record is longer than {LIMIT} bytes"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"type,qu\xffery\n", "line 1: the line is not valid UTF-8"),
        (b"type," + b"x" * (LIMIT + 1) + b"\n", f"line 1: the line is longer than {LIMIT} bytes"),
        (b'type,"query\n', "line 1: a quote is never closed"),
        (b"type,colour\n", "line 1: unknown columns colour"),
        (b"query\n", "line 1: no type column"),
    ],
)
def test_a_csv_header_that_cannot_be_read_stops_before_any_line(
    header: bytes, expected: str
) -> None:
    with pytest.raises(BadParams, match=expected):
        read(csv_documents, header + b"search,a,e1\n")


def test_ndjson_lines_that_cannot_be_read_are_named_and_reading_goes_on() -> None:
    good = b'{"search": {"query": "a", "eventId": "e1"}}\n'
    data = (
        good
        + b'{"search": {"query": "x\xff\xfe"}}\n'
        + b"{not json\n"
        + b'{"search": {"query": "'
        + b"a" * LIMIT
        + b'"}}\n'
        + b"\n"
        + good.replace(b"e1", b"e6")
    )
    assert read(ndjson_documents, data) == [
        (1, search("a", "e1")),
        (2, "error: the line is not valid UTF-8"),
        (3, "error: the line is not valid JSON"),
        (4, f"error: the line is longer than {LIMIT} bytes"),
        (6, search("a", "e6")),
    ]


def test_a_byte_order_mark_before_the_first_ndjson_line_is_skipped() -> None:
    """As a CSV file's is: Windows tools write one before UTF-8 text ("UTF-8 with BOM")."""
    lines = b'\xef\xbb\xbf{"search": {"query": "a", "eventId": "e1"}}\n'
    lines += b'\xef\xbb\xbf{"search": {"query": "b", "eventId": "e2"}}\n'  # not first: not skipped
    assert read(ndjson_documents, lines) == [
        (1, search("a", "e1")),
        (2, "error: the line is not valid JSON"),
    ]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_utf16_file_is_named_for_what_it_is(encoding: str) -> None:
    """Windows PowerShell 5's ``>`` writes UTF-16 with a byte order mark: "not valid UTF-8" did
    not say what to do."""
    wanted = "the file is UTF-16, not UTF-8: save it as UTF-8 and import it again"
    line = '{"search": {"query": "a", "eventId": "e1"}}\n'
    data = ("\ufeff" + line).encode(encoding)
    assert read(ndjson_documents, data)[0] == (1, f"error: {wanted}")
    with pytest.raises(BadParams, match=f"line 1: {wanted}"):
        read(csv_documents, ("\ufeff" + HEADER.decode()).encode(encoding))


@pytest.mark.parametrize("reader", [ndjson_documents, csv_documents], ids=["ndjson", "csv"])
def test_an_over_long_line_is_never_held_whole(reader: Any, tmp_path: Path) -> None:
    path = tmp_path / "long"
    with path.open("wb") as out:
        out.write(HEADER if reader is csv_documents else b"")
        out.write(b'{"search": {"query": "' if reader is ndjson_documents else b"search,")
        for _ in range(32):
            out.write(b"a" * (1 << 20))  # 32 MB on one line
        out.write(b'"}}\n' if reader is ndjson_documents else b",e1\n")
    tracemalloc.start()
    try:
        with path.open("rb") as source:
            found = list(reader(source, lambda _amount: None, limit=LIMIT))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [(_, error)] = found
    assert isinstance(error, BadParams)
    assert error.message == f"the line is longer than {LIMIT} bytes"
    assert peak < 4 * (1 << 20), peak


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b""], ids=["LF", "CRLF", "none"])
@pytest.mark.parametrize("reader", [ndjson_documents, csv_documents], ids=["ndjson", "csv"])
def test_a_line_of_exactly_the_limit_is_read_whatever_its_end(reader: Any, end: bytes) -> None:
    """The line's end is not counted: a line of the limit and a "\n" was refused as longer."""
    header = HEADER if reader is csv_documents else b""
    prefix, suffix = (b"search,", b",e1") if header else (b'{"search": {"query": "', b'"}}')

    def line(length: int) -> bytes:
        return prefix + b"q" * (length - len(prefix) - len(suffix)) + suffix

    [(_, exact)] = read(reader, header + line(LIMIT) + end)
    [(_, over)] = read(reader, header + line(LIMIT + 1) + end)

    assert next(iter(exact.values()))["query"] == "q" * (LIMIT - len(prefix) - len(suffix))
    assert over == f"error: the line is longer than {LIMIT} bytes"


class FailingDisk(io.BytesIO):
    name = "events.ndjson"

    def readline(self, size: int | None = -1, /) -> bytes:
        raise OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize("reader", [ndjson_documents, csv_documents], ids=["ndjson", "csv"])
def test_a_file_that_fails_to_read_is_named(reader: Any) -> None:
    with pytest.raises(BadParams) as raised:
        list(reader(FailingDisk(), lambda _amount: None, limit=LIMIT))
    assert raised.value.message == "cannot read the import file events.ndjson: Input/output error"
