"""An import's lines as rows to store: a plainly valid line straight from its fields, any other
through the doors' draft, so that both give the very same stored row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from app.domain.event_documents import FIELDS, ImportedEvent
from app.domain.events import EventKind
from app.domain.plain_documents import PlainEvent
from app.domain.user_agents import UNKNOWN_CLIENT, ClientTraits
from app.services.record import new_event
from app.storage.directory import EngineRecord
from app.storage.writes import NewEvent

DOOR = "import"
# The fields kept in a row's payload, in the order the doors' payload lists them (its JSON text
# is stored as written); the nested ones never reach a plain row.
_PAYLOAD_ORDER = (
    "targetType",
    "referrer",
    "scope",
    "dsoType",
    "configuration",
    "clickedObject",
    "store",
    "url",
    "pageType",
    "event",
)
_PAYLOAD: dict[EventKind, tuple[str, ...]] = {
    kind: tuple(name for name in _PAYLOAD_ORDER if name in fields)
    for kind, fields in FIELDS.items()
}


def plain_row(event: PlainEvent, engine_id: int, now: datetime) -> NewEvent:
    """The row of a plainly valid line, received at ``now``: what ``draft_row`` makes of it."""
    kind, fields = event.kind, event.fields
    get = fields.get
    query_id = get("queryId")
    if kind is EventKind.SEARCH and not query_id:
        query_id = uuid.uuid4().hex  # clicks link to a search by it
    product_type = None
    if kind is EventKind.CLICK:
        product = get("productType")
        product_type = "search" if product is None else product.lower()
    device = get("device")
    return NewEvent(
        engine_id=engine_id,
        kind=kind,
        occurred_at=(event.occurred_at or now).astimezone(UTC),
        received_at=now,
        door=DOOR,
        device=UNKNOWN_CLIENT.device.value if device is None else device.lower(),
        is_bot=get("isBot") is True,
        event_id=get("eventId"),
        session_id=get("sessionId") or None,  # as the doors store "": no session, no user
        user_id=get("userId") or None,
        query=get("query"),
        query_id=query_id,
        result_count=get("resultCount"),
        document_id=get("targetId") or get("documentId") or get("dfid"),
        content_source_id=get("contentSourceId"),
        product_type=product_type,
        rank=get("rank"),
        page=get("page"),
        score=get("score"),
        payload={name: fields[name] for name in _PAYLOAD[kind] if get(name) is not None},
    )


def draft_row(imported: ImportedEvent, engine: EngineRecord, now: datetime) -> NewEvent:
    """The row of a line read in full, as the doors make it; the client traits are the line's."""
    return new_event(imported.draft, engine, _traits(imported), now, DOOR)


def _traits(imported: ImportedEvent) -> ClientTraits:
    if imported.device is None and imported.is_bot is None:
        return UNKNOWN_CLIENT
    return ClientTraits(
        device=imported.device or UNKNOWN_CLIENT.device, is_bot=bool(imported.is_bot)
    )
