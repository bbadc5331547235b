"""An import's quick way (a plainly valid line straight to its row) against the doors' way (the
line read in full, checked by ``event_problems``, built from its draft): the quick way takes
only lines the doors' rules accept, and makes exactly the row the doors' way makes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.domain.event_documents import COMMON, FIELDS, TRAITS, read_document
from app.domain.events import PUBLIC_NAMES, REQUIRED, EventKind, event_problems
from app.domain.plain_documents import plain_document
from app.errors import BadParams
from app.services.import_rows import draft_row, plain_row
from app.storage.directory import EngineRecord

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
ENGINE = EngineRecord(id=7, hashid="0123456789abcdef0123456789abcdef", account_id=1, name="shop")
ITEM = "a8e4b4a6-2f6b-4b53-9c5e-1d6f0e1a2b3c"
REQUIRED_WIRE: dict[EventKind | None, tuple[str, ...]] = {
    kind: tuple(PUBLIC_NAMES[attribute] for attribute in attributes)
    for kind, attributes in REQUIRED.items()
}
VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [
        None,
        "",
        "x",
        "shop",
        "x" * 36,
        "x" * 37,
        "x" * 64,
        "x" * 65,
        "a\x00b",
        ITEM,
        ITEM.upper(),
        ENGINE.hashid,
        ENGINE.hashid + "\n",
        "all",
        "ITEM",
        "banner",
        "Recommendation",
        "MOBILE",
        "desktop",
        "asc",
        "2025-03-01T10:00:00+00:00",
        "2025-03-01T10:00:00+05:45",
        "2025-03-01T10:00:00",
        "1999-12-31T23:59:59+00:00",
        "2026-01-01T12:04:00+00:00",
        "2026-01-01T12:06:00+00:00",
        "yesterday",
        0,
        1,
        -1,
        2,
        2**31 - 1,
        2**31,
        2**70,
        True,
        False,
        1.5,
        [],
        {},
        {"by": "score", "order": "desc"},
        {"size": 10, "totalElements": 0},
    ]
)


# A valid value of each field, so that many generated documents are valid.
GOOD: dict[str, Any] = {
    "engine": ENGINE.hashid,
    "eventId": "e1",
    "occurredAt": "2025-03-01T10:00:00+05:45",
    "targetId": ITEM,
    "targetType": "item",
    "query": "q",
    "resultCount": 3,
    "scope": ITEM,
    "dsoType": "Item",
    "clickedObject": ITEM,
    "appliedFilters": [{"filter": "a", "operator": "equals", "value": "b"}],
    "sort": {"by": "score", "order": "desc"},
    "rank": 0,
    "page": 1,
    "productType": "quizz",
    "score": 1,
    "device": "mobile",
    "isBot": True,
}


def _field(name: str) -> st.SearchStrategy[Any]:
    good = st.just(GOOD.get(name, name))
    return st.one_of(good, good, good, VALUES)


def _documents_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """The kind's required fields and some others, mostly valid: every rule gets its chance."""
    known = EventKind(kind) if kind != "purchase" else None
    own = [*COMMON, *TRAITS, *FIELDS[known]] if known else []
    required = [name for name in own if name in REQUIRED_WIRE.get(known, ())]
    others = st.lists(st.sampled_from([*own, "unknown"]), unique=True, max_size=8)
    return others.flatmap(
        lambda names: st.fixed_dictionaries({n: _field(n) for n in dict.fromkeys(required + names)})
    ).map(lambda fields: {kind: fields})


DOCUMENTS = st.sampled_from([*(kind.value for kind in EventKind), "purchase"]).flatmap(
    _documents_of
)
PLAIN = [
    {"visit": {"eventId": "e2", "occurredAt": "2025-01-01T00:00:34+00:00", "store": "shop"}},
    {"search": {"eventId": "e0", "query": "term 0", "resultCount": 0, "queryId": "q0"}},
    {"search": {"query": "no queryId", "scope": ITEM, "dsoType": "ITEM", "sessionId": "s1"}},
    {"click": {"documentId": "d1", "rank": 0, "queryId": "q0", "productType": "BANNER"}},
    {"click": {"documentId": "d1", "rank": 3, "page": 2, "event": "add", "device": "MOBILE"}},
    {"feedback": {"documentId": "d1", "score": -1, "rank": 1, "isBot": True}},
    {"view": {"targetId": ITEM, "targetType": "item", "referrer": "/r", "userId": "u"}},
    {"visit": {"store": "shop", "url": "/p", "pageType": "home", "dfid": "d", "engine": None}},
    {
        "visit": {
            "engine": ENGINE.hashid,
            "store": "shop",
            "url": "/p/1",
            "device": "UNKNOWN",
            "isBot": False,
        }
    },
]


def doors_row(document: Any) -> tuple[Any, ...] | None:
    """The row the doors' way makes of the line, None if their rules refuse it."""
    try:
        imported = read_document(document)
    except BadParams:
        return None
    if event_problems(imported.draft, now=NOW):
        return None
    return _comparable(document, draft_row(imported, ENGINE, NOW).values())


def quick_row(document: Any) -> tuple[Any, ...] | None:
    plain = plain_document(document, now=NOW)
    if plain is None:
        return None
    return _comparable(document, plain_row(plain, ENGINE.id, NOW).values())


def _comparable(document: Any, values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A search sent without a queryId gets a new random one: compared as "some 32 hex"."""
    [(kind, fields)] = document.items()
    if kind == "search" and not fields.get("queryId"):
        query_id = values[11]
        assert isinstance(query_id, str)
        assert len(query_id) == 32
        return (*values[:11], "<new>", *values[12:])
    return values


@pytest.mark.parametrize("document", PLAIN)
def test_plain_lines_go_the_quick_way_to_the_same_row(document: dict[str, Any]) -> None:
    quick = quick_row(document)
    assert quick is not None
    assert quick == doors_row(document)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
@example({"visit": {"store": "s", "unknown": None}})  # an unknown field, even null, is refused
@example({"search": {"query": "q", "page": None}})
@example({"search": {"query": "q", "sort": {"by": "score", "order": "desc"}}})
@example({"search": {"query": "\u4e00" * 700}})  # 700 characters, 2,100 bytes
@example({"view": {"targetId": "+" + ITEM[1:], "targetType": "item"}})
def test_the_quick_way_takes_only_what_the_doors_take_and_makes_the_same_row(
    document: dict[str, Any],
) -> None:
    quick = quick_row(document)
    if quick is not None:
        assert quick == doors_row(document)


@pytest.mark.parametrize(
    "document",
    [
        {"search": {"query": "q", "appliedFilters": []}},
        {"click": {"documentId": "d", "rank": True}},
        {"visit": {"store": "s", "occurredAt": "2025-03-01T10:00:00"}},
        {"visit": {"store": "x" * 37}},
        {"view": {"targetId": "not a uuid", "targetType": "item"}},
        {"view": {"targetId": " " + ITEM[1:-1] + " ", "targetType": "item"}},
        {"search": {"query": "\u4e00" * 683}},
        {"visit": {"store": "shop"}, "click": {}},
        [],
        "visit",
    ],
)
def test_lines_that_are_not_plain_go_the_long_way(document: Any) -> None:
    assert plain_document(document, now=NOW) is None
