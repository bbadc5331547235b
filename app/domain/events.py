"""Event kinds, the fields each one carries, and the rules every door applies to them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from app.errors import BadParams

HASHID = re.compile(r"^[a-f0-9]{32}$")
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
# Clocks drift: an event may be stamped a little ahead of the server's clock.
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_BATCH = 1000

# Length bounds for every free-text field: a column never holds an unbounded string.
MAX_ID = 255
MAX_TEXT = 1024
MAX_URL = 4096
MAX_JSON_ITEMS = 100


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


@dataclass(frozen=True, slots=True, kw_only=True)
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

    @property
    def effective_result_count(self) -> int | None:
        if self.result_count is not None:
            return self.result_count
        return self.page_info.total_elements if self.page_info else None


REQUIRED: dict[EventKind, tuple[tuple[str, str], ...]] = {
    EventKind.VIEW: (("target_id", "targetId"), ("target_type", "targetType")),
    EventKind.SEARCH: (("query", "query"),),
    EventKind.VISIT: (("store", "store"),),
    EventKind.CLICK: (("document_id", "documentId"), ("rank", "rank")),
    EventKind.FEEDBACK: (("document_id", "documentId"), ("score", "score")),
}

# (attribute, public name, maximum length)
BOUNDED_TEXT: tuple[tuple[str, str, int], ...] = (
    ("event_id", "eventId", 64),
    ("session_id", "sessionId", 64),
    ("user_id", "userId", 64),
    ("target_id", "targetId", MAX_ID),
    ("target_type", "targetType", 64),
    ("referrer", "referrer", MAX_URL),
    ("query", "query", MAX_TEXT),
    ("scope", "scope", MAX_ID),
    ("configuration", "configuration", MAX_ID),
    ("clicked_object", "clickedObject", MAX_URL),
    ("store", "store", 36),
    ("url", "url", MAX_URL),
    ("page_type", "pageType", 64),
    ("dfid", "dfid", MAX_ID),
    ("query_id", "queryId", 64),
    ("document_id", "documentId", MAX_ID),
    ("content_source_id", "contentSourceId", MAX_ID),
    ("label", "event", MAX_ID),
)

MAX_INT = 2**31 - 1


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def event_problems(draft: EventDraft, *, now: datetime) -> list[str]:
    """Every rule the event breaks, as public messages naming the field (empty when valid)."""
    problems: list[str] = []
    for attribute, name in REQUIRED[draft.kind]:
        value = getattr(draft, attribute)
        if value is None or value == "":
            problems.append(f"{name} is required")
    for attribute, name, limit in BOUNDED_TEXT:
        value = getattr(draft, attribute)
        if isinstance(value, str) and len(value) > limit:
            problems.append(f"{name} must be at most {limit} characters")
        if isinstance(value, str) and "\x00" in value:
            problems.append(f"{name} must not contain NUL characters")
    if draft.engine is not None and not HASHID.match(draft.engine):
        problems.append("engine must be 32 lowercase hexadecimal characters")
    if draft.store is not None and draft.store == "":
        problems.append("store must be at least 1 character")
    problems += _time_problems(draft.occurred_at, now)
    problems += _KIND_RULES[draft.kind](draft)
    return problems


def validate_events(drafts: list[EventDraft], *, now: datetime) -> None:
    """Reject the whole batch if any event is invalid, naming the index of each bad one."""
    if len(drafts) > MAX_BATCH:
        raise BadParams(f"at most {MAX_BATCH} events per batch")
    if len(drafts) == 1:
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
        return ["targetId must be a UUID"]
    return []


def _search_rules(draft: EventDraft) -> list[str]:
    problems: list[str] = []
    if draft.scope is not None and not is_uuid(draft.scope):
        problems.append("scope must be a UUID")
    if draft.dso_type is not None and draft.dso_type.lower() not in DSO_TYPES:
        problems.append("dsoType must be one of all, item, community, collection")
    if draft.sort is not None and draft.sort.order.lower() not in SORT_ORDERS:
        problems.append("sort.order must be asc or desc")
    if len(draft.applied_filters) > MAX_JSON_ITEMS:
        problems.append(f"appliedFilters must hold at most {MAX_JSON_ITEMS} filters")
    problems += _int_range("resultCount", draft.result_count, 0)
    if draft.page_info is not None:
        page = draft.page_info
        problems += _int_range("page.size", page.size, 0)
        problems += _int_range("page.totalElements", page.total_elements, 0)
        problems += _int_range("page.totalPages", page.total_pages, 0)
        problems += _int_range("page.number", page.number, 0)
    return problems


def _visit_rules(draft: EventDraft) -> list[str]:
    return []


def _click_rules(draft: EventDraft) -> list[str]:
    return _int_range("rank", draft.rank, 0) + _int_range("page", draft.page, 1)


def _feedback_rules(draft: EventDraft) -> list[str]:
    problems = _int_range("rank", draft.rank, 0) + _int_range("page", draft.page, 1)
    if draft.score is not None and draft.score not in (1, -1):
        problems.append("score must be 1 or -1")
    return problems


_KIND_RULES = {
    EventKind.VIEW: _view_rules,
    EventKind.SEARCH: _search_rules,
    EventKind.VISIT: _visit_rules,
    EventKind.CLICK: _click_rules,
    EventKind.FEEDBACK: _feedback_rules,
}
