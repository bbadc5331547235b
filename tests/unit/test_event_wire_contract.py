"""A door's own contract on an event: its names, its required fields, what it could not read."""

from __future__ import annotations

from datetime import UTC, datetime

from app.domain.events import EventDraft, EventKind, event_problems

NOW = datetime(2025, 6, 1, tzinfo=UTC)
ITEM = "43f9bb3e-f90d-458f-9858-7e4589481d18"
SNAKE = {"query_id": "query_id", "document_id": "document_id", "label": "event"}


def problems(**fields: object) -> list[str]:
    return event_problems(EventDraft(**fields), now=NOW)  # type: ignore[arg-type]


def test_messages_use_graphql_names_by_default() -> None:
    assert problems(kind=EventKind.CLICK, rank=-1) == [
        "documentId is required",
        "rank must be greater than or equal to 0",
    ]


def test_messages_use_the_door_names() -> None:
    assert problems(kind=EventKind.CLICK, rank=0, query_id="q" * 65, wire_names=SNAKE) == [
        "document_id is required",
        "query_id must be at most 64 characters",
    ]


def test_door_requires_more_than_the_kind_does() -> None:
    found = problems(
        kind=EventKind.CLICK,
        document_id="d",
        rank=0,
        wire_names=SNAKE,
        wire_required=("query_id", "rank", "label"),
    )
    assert found == ["query_id is required", "event is required"]


def test_an_unread_field_has_one_message_and_the_others_still_count() -> None:
    found = problems(
        kind=EventKind.FEEDBACK,
        score=2,
        wire_names=SNAKE,
        wire_required=("query_id",),
        wire_problems=(("document_id", "document_id must be a string"),),
    )
    assert found == [
        "document_id must be a string",
        "query_id is required",
        "score must be 1 or -1",
    ]


def test_a_door_bound_replaces_the_event_bound() -> None:
    found = problems(
        kind=EventKind.VISIT,
        store="s",
        session_id="s" * 100,
        wire_problems=(("session_id", "session_id must be at most 32 characters"),),
    )
    assert found == ["session_id must be at most 32 characters"]


def test_an_empty_store_is_one_problem() -> None:
    assert problems(kind=EventKind.VISIT, store="") == ["store is required"]


def test_hashid_named_as_the_door_names_the_engine() -> None:
    found = problems(
        kind=EventKind.VISIT, store="s", engine="X" * 32, wire_names={"engine": "hashid"}
    )
    assert found == ["hashid must be 32 lowercase hexadecimal characters"]


def test_clicked_object_is_a_uuid() -> None:
    assert problems(kind=EventKind.SEARCH, query="q", clicked_object=ITEM) == []
    assert problems(kind=EventKind.SEARCH, query="q", clicked_object="item-1") == [
        "clickedObject must be a UUID"
    ]
