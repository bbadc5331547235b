"""Event kinds, the fields each one carries, and the rules every door applies to them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from app.errors import BadParams

HASHID = re.compile(r"^[a-f0-9]{32}$")
UUID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.IGNORECASE)
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
# Clocks drift: an event may be stamped a little ahead of the server's clock.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_BATCH = 1000

# Length bounds for every free-text field: a column never holds an unbounded string.
MAX_ID = 255
MAX_TEXT = 1024
MAX_URL = 4096
MAX_JSON_ITEMS = 100
# A query is bounded in UTF-8 bytes as well: PostgreSQL indexes it (a search's, and the one a
# linked click or feedback takes from its search) with its engine, kind and time, and an index
# entry holds at most 2,704 bytes. 1,024 characters of Chinese are 3,072 bytes: such a search
# failed its insert, an internal error, and the event was lost.
MAX_QUERY_BYTES = 2048


class EventKind(StrEnum):
    VIEW = "view"
    SEARCH = "search"
    VISIT = "visit"
    CLICK = "click"
    FEEDBACK = "feedback"


class Device(StrEnum):
    DESKTOP = "desktop"
    MOBILE = "mobile"
    UNKNOWN = "unknown"


class ProductType(StrEnum):
    """What was clicked, in Doofinder's vocabulary; a plain search result by default."""

    SEARCH = "search"
    BANNER = "banner"
    CUSTOM_RESULT = "custom_result"
    RECOMMENDATION = "recommendation"
    QUIZZ = "quizz"
    AICHAT = "aichat"


DSO_TYPES = frozenset({"all", "item", "community", "collection"})
SORT_ORDERS = frozenset({"asc", "desc"})
FILTER_KEYS = frozenset({"filter", "operator", "value", "label"})


@dataclass(frozen=True, slots=True)
class PageInfo:
    """DSpace's pagination status of a search: its ``totalElements`` is the result count."""

    size: int | None = None
    total_elements: int | None = None
    total_pages: int | None = None
    number: int | None = None


@dataclass(frozen=True, slots=True)
class AppliedFilter:
    filter: str
    operator: str
    value: str
    label: str | None = None


@dataclass(frozen=True, slots=True)
class SortInfo:
    by: str
    order: str


# Not frozen, though nothing changes a draft once made: a frozen dataclass's __init__ sets each
# of these forty fields through object.__setattr__, which made building one cost about 9 µs
# instead of 2 (one per event, at every door and for every line of an import).
@dataclass(slots=True, kw_only=True)
class EventDraft:
    """One event as a client described it, before validation and enrichment."""

    kind: EventKind
    engine: str | None = None
    event_id: str | None = None
    occurred_at: datetime | None = None
    session_id: str | None = None
    user_id: str | None = None
    # view
    target_id: str | None = None
    target_type: str | None = None
    referrer: str | None = None
    # search
    query: str | None = None
    result_count: int | None = None
    scope: str | None = None
    dso_type: str | None = None
    configuration: str | None = None
    applied_filters: tuple[AppliedFilter, ...] = ()
    sort: SortInfo | None = None
    page_info: PageInfo | None = None
    clicked_object: str | None = None
    # visit
    store: str | None = None
    url: str | None = None
    page_type: str | None = None
    dfid: str | None = None
    # click and feedback
    query_id: str | None = None
    document_id: str | None = None
    content_source_id: str | None = None
    rank: int | None = None
    page: int | None = None
    label: str | None = None
    score: int | None = None
    product_type: ProductType | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # A vendor door's own contract, for doors that name fields otherwise or require more than the
    # event's meaning does: its names (attribute -> wire name), the attributes it requires, and
    # what it could not read, as (attribute, message). They are reported with the event's own
    # problems, so a client sees every problem at once, each field named as it sent it.
    wire_names: Mapping[str, str] = field(default_factory=dict)
    wire_required: tuple[str, ...] = ()
    wire_problems: tuple[tuple[str, str], ...] = ()

    @property
    def effective_result_count(self) -> int | None:
        if self.result_count is not None:
            return self.result_count
        return self.page_info.total_elements if self.page_info else None

    def name_of(self, attribute: str) -> str:
        """The field's name as the client spelled it."""
        return self.wire_names.get(attribute) or PUBLIC_NAMES.get(attribute, attribute)


# What GraphQL (and DSpace) call each attribute: the names messages use by default.
PUBLIC_NAMES: dict[str, str] = {
    "engine": "engine",
    "event_id": "eventId",
    "occurred_at": "occurredAt",
    "session_id": "sessionId",
    "user_id": "userId",
    "target_id": "targetId",
    "target_type": "targetType",
    "referrer": "referrer",
    "query": "query",
    "result_count": "resultCount",
    "scope": "scope",
    "dso_type": "dsoType",
    "configuration": "configuration",
    "applied_filters": "appliedFilters",
    "sort": "sort",
    "page_info": "page",
    "clicked_object": "clickedObject",
    "store": "store",
    "url": "url",
    "page_type": "pageType",
    "dfid": "dfid",
    "query_id": "queryId",
    "document_id": "documentId",
    "content_source_id": "contentSourceId",
    "rank": "rank",
    "page": "page",
    "label": "event",
    "score": "score",
    "product_type": "productType",
}


# What each kind of event means at the least; a door may require more (``wire_required``).
REQUIRED: dict[EventKind, tuple[str, ...]] = {
    EventKind.VIEW: ("target_id", "target_type"),
    EventKind.SEARCH: ("query",),
    EventKind.VISIT: ("store",),
    EventKind.CLICK: ("document_id", "rank"),
    EventKind.FEEDBACK: ("document_id", "score"),
}

# (attribute, maximum length)
BOUNDED_TEXT: tuple[tuple[str, int], ...] = (
    ("event_id", 64),
    ("session_id", 64),
    ("user_id", 64),
    ("target_id", MAX_ID),
    ("target_type", 64),
    ("referrer", MAX_URL),
    ("query", MAX_TEXT),
    ("scope", MAX_ID),
    ("configuration", MAX_ID),
    ("clicked_object", MAX_URL),
    ("store", 36),
    ("url", MAX_URL),
    ("page_type", 64),
    ("dfid", MAX_ID),
    ("query_id", 64),
    ("document_id", MAX_ID),
    ("content_source_id", MAX_ID),
    ("label", MAX_ID),
)

MAX_INT = 2**31 - 1


def is_uuid(value: str) -> bool:
    """A UUID as DSpace writes one: 8-4-4-4-12 hexadecimal digits, in either case (``uuid.UUID``
    also reads braces, ``urn:``, hyphens anywhere, a sign, spaces, underscores and non-ASCII
    digits, which no client means as one)."""
    return UUID.fullmatch(value) is not None


def query_fits(query: str) -> bool:
    """Whether a query within its length in characters is also within its length in bytes."""
    # A character is at most 4 bytes: most queries are decided without encoding them.
    return len(query) * 4 <= MAX_QUERY_BYTES or (
        len(query.encode("utf-8", "surrogatepass")) <= MAX_QUERY_BYTES
    )


def event_problems(draft: EventDraft, *, now: datetime) -> list[str]:
    """Every rule the event breaks, as public messages naming the field (empty when valid)."""
    problems = [message for _, message in draft.wire_problems]
    # A field the door could not read already has its message: one message per field.
    unread = {attribute for attribute, _ in draft.wire_problems}
    for attribute in dict.fromkeys(REQUIRED[draft.kind] + draft.wire_required):
        value = getattr(draft, attribute)
        if attribute not in unread and (value is None or value == ""):
            problems.append(f"{draft.name_of(attribute)} is required")
    for attribute, limit in BOUNDED_TEXT:
        value = getattr(draft, attribute)
        if attribute in unread or not isinstance(value, str):
            continue
        if len(value) > limit:
            problems.append(f"{draft.name_of(attribute)} must be at most {limit} characters")
        elif attribute == "query" and not query_fits(value):
            problems.append(f"{draft.name_of(attribute)} must be at most {MAX_QUERY_BYTES} bytes")
        if "\x00" in value:
            problems.append(f"{draft.name_of(attribute)} must not contain NUL characters")
    if draft.event_id == "":
        # An idempotency key must identify something: stored, "" would make every other event
        # sent with it a conflict.
        problems.append(f"{draft.name_of('event_id')} must not be empty")
    if draft.engine is not None and not HASHID.fullmatch(draft.engine):
        problems.append(f"{draft.name_of('engine')} must be 32 lowercase hexadecimal characters")
    problems += _time_problems(draft.occurred_at, now)
    problems += _KIND_RULES[draft.kind](draft)
    return problems


def validate_events(drafts: list[EventDraft], *, now: datetime, batch: bool = False) -> None:
    """Reject them all if any event is invalid; in a batch, name the index of each bad one."""
    if len(drafts) > MAX_BATCH:
        raise BadParams(f"at most {MAX_BATCH} events per batch")
    if not batch and len(drafts) == 1:
        problems = event_problems(drafts[0], now=now)
        if problems:
            raise BadParams.of(problems)
        return
    indexed = [
        f"events[{index}]: {problem}"
        for index, draft in enumerate(drafts)
        for problem in event_problems(draft, now=now)
    ]
    if indexed:
        raise BadParams.of(indexed)


def _time_problems(occurred_at: datetime | None, now: datetime) -> list[str]:
    if occurred_at is None:
        return []
    if occurred_at.tzinfo is None:
        return ["occurredAt must carry a timezone offset"]
    if occurred_at < EARLIEST_OCCURRED_AT:
        return ["occurredAt must not be before 2000-01-01"]
    if occurred_at > now + FUTURE_TOLERANCE:
        return ["occurredAt must not be more than 5 minutes in the future"]
    return []


def _int_range(name: str, value: int | None, low: int) -> list[str]:
    if value is None:
        return []
    if value < low:
        return [f"{name} must be greater than or equal to {low}"]
    if value > MAX_INT:
        return [f"{name} must be at most {MAX_INT}"]
    return []


def _view_rules(draft: EventDraft) -> list[str]:
    if draft.target_id and not is_uuid(draft.target_id):
        return [f"{draft.name_of('target_id')} must be a UUID"]
    return []


def _search_rules(draft: EventDraft) -> list[str]:
    name = draft.name_of
    problems: list[str] = []
    for attribute in ("scope", "clicked_object"):
        value = getattr(draft, attribute)
        if value is not None and not is_uuid(value):
            problems.append(f"{name(attribute)} must be a UUID")
    if draft.dso_type is not None and draft.dso_type.lower() not in DSO_TYPES:
        problems.append(f"{name('dso_type')} must be one of all, item, community, collection")
    if draft.sort is not None and draft.sort.order.lower() not in SORT_ORDERS:
        problems.append(f"{name('sort')}.order must be asc or desc")
    if draft.sort is not None:
        problems += _text_problems(f"{name('sort')}.by", draft.sort.by, MAX_ID)
    if len(draft.applied_filters) > MAX_JSON_ITEMS:
        problems.append(f"{name('applied_filters')} must hold at most {MAX_JSON_ITEMS} filters")
    for index, applied in enumerate(draft.applied_filters[:MAX_JSON_ITEMS]):
        for part in ("filter", "operator", "value", "label"):
            label = f"{name('applied_filters')}[{index}].{part}"
            problems += _text_problems(label, getattr(applied, part), MAX_TEXT)
    problems += _int_range(name("result_count"), draft.result_count, 0)
    if draft.page_info is not None:
        page, prefix = draft.page_info, name("page_info")
        problems += _int_range(f"{prefix}.size", page.size, 0)
        problems += _int_range(f"{prefix}.totalElements", page.total_elements, 0)
        problems += _int_range(f"{prefix}.totalPages", page.total_pages, 0)
        problems += _int_range(f"{prefix}.number", page.number, 0)
    return problems


def _text_problems(label: str, value: str | None, limit: int) -> list[str]:
    """The bounds of a free-text part of an event (its own fields are in BOUNDED_TEXT)."""
    if value is None:
        return []
    if len(value) > limit:
        return [f"{label} must be at most {limit} characters"]
    if "\x00" in value:
        return [f"{label} must not contain NUL characters"]
    return []


def _visit_rules(draft: EventDraft) -> list[str]:
    return []


def _position_rules(draft: EventDraft) -> list[str]:
    """Ranks count from 0 in the whole result set, pages from 1."""
    return _int_range(draft.name_of("rank"), draft.rank, 0) + _int_range(
        draft.name_of("page"), draft.page, 1
    )


def _click_rules(draft: EventDraft) -> list[str]:
    return _position_rules(draft)


def _feedback_rules(draft: EventDraft) -> list[str]:
    problems = _position_rules(draft)
    if draft.score is not None and draft.score not in (1, -1):
        problems.append(f"{draft.name_of('score')} must be 1 or -1")
    return problems


_KIND_RULES = {
    EventKind.VIEW: _view_rules,
    EventKind.SEARCH: _search_rules,
    EventKind.VISIT: _visit_rules,
    EventKind.CLICK: _click_rules,
    EventKind.FEEDBACK: _feedback_rules,
}
