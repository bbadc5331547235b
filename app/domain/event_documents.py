"""Events as plain documents, for bulk import and export: GraphQL's ``EventInput`` shapes.

A document is one object naming its kind, like ``{"search": {"query": "…", "eventId": "…"}}``,
with the fields of the GraphQL input in camelCase. A few more are read and written so that an
export imports back exactly: a search's own ``queryId`` (which links clicks to it) and
``clickedObject``, and what was derived from the client when it was first recorded, ``device``
and ``isBot``. CSV rows carry the same fields as columns, with a ``type`` column for the kind;
nested values (``appliedFilters``, ``sort``, a search's ``page``) are JSON in their cell. A text
cell that a spreadsheet would run as a formula is written with a ``'`` before it, and read back
without it (``defused``, ``restored``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from app.domain.events import (
    AppliedFilter,
    Device,
    EventDraft,
    EventKind,
    PageInfo,
    ProductType,
    SortInfo,
)
from app.errors import BadParams


@dataclass(frozen=True, slots=True)
class ImportedEvent:
    """A document read: the draft, and the client traits it carried, if it did."""

    draft: EventDraft
    device: Device | None = None
    is_bot: bool | None = None


Read = Callable[[str, Any], Any]


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadParams(f"{name} must be a string")
    return value


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadParams(f"{name} must be an integer")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadParams(f"{name} must be true or false")
    return value


def _instant(name: str, value: Any) -> datetime:
    try:
        return datetime.fromisoformat(_text(name, value))
    except ValueError:
        raise BadParams(f"{name} must be an ISO 8601 date-time") from None


def _object(name: str, value: Any, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadParams(f"{name} must be an object")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise BadParams(f"{name} has unknown fields: {', '.join(unknown)}")
    return value


def _filters(name: str, value: Any) -> tuple[AppliedFilter, ...]:
    if not isinstance(value, list):
        raise BadParams(f"{name} must be a list")
    keys = frozenset({"filter", "operator", "value", "label"})
    found = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        fields = _object(where, item, keys)
        found.append(
            AppliedFilter(
                _text(f"{where}.filter", fields.get("filter")),
                _text(f"{where}.operator", fields.get("operator")),
                _text(f"{where}.value", fields.get("value")),
                None if fields.get("label") is None else _text(f"{where}.label", fields["label"]),
            )
        )
    return tuple(found)


def _sort(name: str, value: Any) -> SortInfo:
    fields = _object(name, value, frozenset({"by", "order"}))
    by, order = fields.get("by"), fields.get("order")
    return SortInfo(_text(f"{name}.by", by), _text(f"{name}.order", order))


def _page_info(name: str, value: Any) -> PageInfo:
    keys = ("size", "totalElements", "totalPages", "number")
    fields = _object(name, value, frozenset(keys))
    size, total, pages, number = (
        None if fields.get(key) is None else _int(f"{name}.{key}", fields[key]) for key in keys
    )
    return PageInfo(size, total, pages, number)


def _product_type(name: str, value: Any) -> ProductType:
    try:
        return ProductType(_text(name, value).lower())
    except ValueError:
        choices = ", ".join(p.name for p in ProductType)
        raise BadParams(f"{name} must be one of {choices}") from None


# Wire name -> (draft attribute, reader), per kind; "" for fields kept beside the draft.
COMMON: dict[str, tuple[str, Read]] = {
    "engine": ("engine", _text),
    "eventId": ("event_id", _text),
    "occurredAt": ("occurred_at", _instant),
    "sessionId": ("session_id", _text),
    "userId": ("user_id", _text),
}
FIELDS: dict[EventKind, dict[str, tuple[str, Read]]] = {
    EventKind.VIEW: {
        "targetId": ("target_id", _text),
        "targetType": ("target_type", _text),
        "referrer": ("referrer", _text),
    },
    EventKind.SEARCH: {
        "query": ("query", _text),
        "resultCount": ("result_count", _int),
        "scope": ("scope", _text),
        "dsoType": ("dso_type", _text),
        "configuration": ("configuration", _text),
        "appliedFilters": ("applied_filters", _filters),
        "sort": ("sort", _sort),
        "page": ("page_info", _page_info),
        "clickedObject": ("clicked_object", _text),
        "queryId": ("query_id", _text),
    },
    EventKind.VISIT: {
        "store": ("store", _text),
        "url": ("url", _text),
        "pageType": ("page_type", _text),
        "dfid": ("dfid", _text),
    },
    EventKind.CLICK: {
        "documentId": ("document_id", _text),
        "rank": ("rank", _int),
        "queryId": ("query_id", _text),
        "contentSourceId": ("content_source_id", _text),
        "page": ("page", _int),
        "event": ("label", _text),
        "productType": ("product_type", _product_type),
    },
    EventKind.FEEDBACK: {
        "documentId": ("document_id", _text),
        "score": ("score", _int),
        "queryId": ("query_id", _text),
        "contentSourceId": ("content_source_id", _text),
        "rank": ("rank", _int),
        "page": ("page", _int),
    },
}
TRAITS = ("device", "isBot")
# The readers of fields that arrive as one JSON string or integer, and which of the two
# (``app.domain.plain_documents`` checks those without reading the document in full).
PLAIN_TYPES: dict[Read, type] = {_text: str, _instant: str, _product_type: str, _int: int}
# Per kind, once: every field a document of it may carry, and how to read each one.
_KNOWN: dict[EventKind, dict[str, tuple[str, Read]]] = {
    kind: COMMON | fields for kind, fields in FIELDS.items()
}
_ALLOWED: dict[EventKind, frozenset[str]] = {
    kind: frozenset(known) | frozenset(TRAITS) for kind, known in _KNOWN.items()
}
KIND_NAMES = ", ".join(kind.value for kind in EventKind)
_KINDS: dict[str, EventKind] = {kind.value: kind for kind in EventKind}


def read_document(document: Any) -> ImportedEvent:
    """The event a document describes; BadParams names what is wrong with it."""
    if not isinstance(document, dict) or len(document) != 1:
        raise BadParams(f"expected an object with exactly one of {KIND_NAMES}")
    [(name, fields)] = document.items()
    kind = _KINDS.get(name)
    if kind is None:
        raise BadParams(f"unknown event type {name[:40]!r}: expected one of {KIND_NAMES}")
    if not isinstance(fields, dict):
        raise BadParams(f"{name} must be an object")
    known = _KNOWN[kind]
    if not _ALLOWED[kind].issuperset(fields):
        unknown = sorted(set(fields) - _ALLOWED[kind])
        raise BadParams(f"unknown fields for {name}: {', '.join(u[:40] for u in unknown)}")
    values: dict[str, Any] = {}
    for wire, value in fields.items():
        entry = known.get(wire)  # None for the traits, read below
        if value is None or entry is None:
            continue
        attribute, read = entry
        # Most fields are strings, taken as they are: no call to check each (once per line).
        values[attribute] = value if read is _text and type(value) is str else read(wire, value)
    device = None
    if fields.get("device") is not None:
        try:
            device = Device(_text("device", fields["device"]).lower())
        except ValueError:
            raise BadParams("device must be one of DESKTOP, MOBILE, UNKNOWN") from None
    is_bot = None if fields.get("isBot") is None else _bool("isBot", fields["isBot"])
    return ImportedEvent(EventDraft(kind=kind, **values), device, is_bot)


# ---- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "type",
    *COMMON,
    *dict.fromkeys(wire for fields in FIELDS.values() for wire in fields),
    *TRAITS,
)
_INTEGERS = frozenset({"resultCount", "rank", "score"})
_NESTED = frozenset({"appliedFilters", "sort"})
# A spreadsheet runs a cell starting with one of these as a formula (OWASP's CSV injection):
# clients' text (a query, a session id) must not start a cell with one.
FORMULA_STARTS = "=+-@\t\r"
# Escaped: a cell that would start a formula, and one that looks escaped already ('=…, ''+…),
# so that reading back undoes exactly what writing did, for every string.
_TO_ESCAPE = re.compile(f"'*[{re.escape(FORMULA_STARTS)}]")
_ESCAPED = re.compile(f"'+[{re.escape(FORMULA_STARTS)}]")
_FIRST_CHARACTERS = "'" + FORMULA_STARTS


def defused(text: str) -> str:
    """A text cell as a spreadsheet shows it, never runs it: ``'`` before a formula's start."""
    if text[:1] in _FIRST_CHARACTERS and _TO_ESCAPE.match(text):
        return "'" + text
    return text


def restored(cell: str) -> str:
    """The text a ``defused`` cell was written from."""
    if cell[:1] == "'" and _ESCAPED.match(cell):
        return cell[1:]
    return cell


def csv_document(row: Mapping[str, str | None]) -> Any:
    """A CSV row (column -> cell) as a document; empty cells are absent fields."""
    kind = (row.get("type") or "").strip().lower()
    if not kind:
        raise BadParams("the type column is empty")
    fields: dict[str, Any] = {}
    for column, cell in row.items():
        if column == "type" or cell is None or cell == "":
            continue
        fields[column] = _cell(kind, column, cell)
    return {kind: fields}


def _cell(kind: str, column: str, cell: str) -> Any:
    nested = column in _NESTED or (column == "page" and kind == "search")
    if nested:
        try:
            return orjson.loads(cell)
        except orjson.JSONDecodeError:
            raise BadParams(f"{column} must hold JSON") from None
    if column in _INTEGERS or column == "page":
        try:
            return int(cell)
        except ValueError:
            raise BadParams(f"{column} must be an integer") from None
    if column == "isBot":
        if cell.lower() not in ("true", "false"):
            raise BadParams("isBot must be true or false")
        return cell.lower() == "true"
    return restored(cell)


def csv_row(document: Mapping[str, Any]) -> dict[str, str]:
    """A document as a CSV row, the inverse of ``csv_document``."""
    [(kind, fields)] = document.items()
    row = {"type": kind}
    for column, value in fields.items():
        if isinstance(value, dict | list):
            row[column] = orjson.dumps(value).decode()
        elif isinstance(value, bool):
            row[column] = "true" if value else "false"
        elif isinstance(value, str):
            row[column] = defused(value)
        else:
            row[column] = str(value)
    return row
