"""The common import document checked in one pass over its own values, with no draft made.

Most lines of an import are plain: a kind, a few strings and integers. ``plain_document`` checks
such a line against the same rules as ``read_document`` and ``event_problems`` (the tables of
``app.domain.events`` and ``app.domain.event_documents``), field by field as it comes. It only
ever says yes or "not plainly valid": a nested field (a search's filters, sort or page), a value
of an unexpected type, anything a rule refuses, all go to ``read_document`` and the doors'
rules, which read the line in full and name what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.domain.event_documents import COMMON, FIELDS, PLAIN_TYPES, TRAITS
from app.domain.events import (
    BOUNDED_TEXT,
    DSO_TYPES,
    EARLIEST_OCCURRED_AT,
    FUTURE_TOLERANCE,
    HASHID,
    MAX_INT,
    REQUIRED,
    Device,
    EventKind,
    ProductType,
    is_uuid,
    query_fits,
)

# A field's rule: the value's type, its length bound (strings: also no NUL), and a test of the
# value itself (None: none).
Rule = tuple[type[Any], int | None, Callable[[Any], bool] | None]

_LIMITS: dict[str, int] = dict(BOUNDED_TEXT)  # by attribute
_DEVICES = frozenset(device.value for device in Device)
_PRODUCT_TYPES = frozenset(product.value for product in ProductType)


def _counted(low: int) -> Callable[[Any], bool]:
    return lambda value: low <= value <= MAX_INT


# What each field must be beyond its type and length, by wire name (as in ``event_problems``).
_TESTS: dict[str, Callable[[Any], bool]] = {
    "engine": lambda value: HASHID.fullmatch(value) is not None,
    "eventId": lambda value: value != "",  # an idempotency key must identify something
    "query": query_fits,
    "scope": is_uuid,
    "clickedObject": is_uuid,
    "dsoType": lambda value: value.lower() in DSO_TYPES,
    "resultCount": _counted(0),
    "rank": _counted(0),
    "page": _counted(1),  # a click's or feedback's page; a search's page is nested
    "score": lambda value: value in (1, -1),
    "productType": lambda value: value.lower() in _PRODUCT_TYPES,
    "device": lambda value: value.lower() in _DEVICES,
}
_VIEW_TESTS: dict[str, Callable[[Any], bool]] = {"targetId": is_uuid}


def _rules(kind: EventKind) -> dict[str, Rule]:
    """The plain fields of a kind; its nested ones are left out, so they go the long way."""
    tests = _TESTS | (_VIEW_TESTS if kind is EventKind.VIEW else {})
    rules: dict[str, Rule] = {}
    for wire, (attribute, read) in (COMMON | FIELDS[kind]).items():
        plain = PLAIN_TYPES.get(read)
        if plain is not None:
            rules[wire] = (plain, _LIMITS.get(attribute), tests.get(wire))
    rules["device"] = (str, None, tests["device"])
    rules["isBot"] = (bool, None, None)
    return rules


def _required(kind: EventKind) -> tuple[str, ...]:
    wire_of = {attribute: wire for wire, (attribute, _) in (COMMON | FIELDS[kind]).items()}
    return tuple(wire_of[attribute] for attribute in REQUIRED[kind])


_RULES: dict[str, tuple[EventKind, dict[str, Rule], tuple[str, ...]]] = {
    kind.value: (kind, _rules(kind), _required(kind)) for kind in EventKind
}
assert all(trait in rules for _, rules, _ in _RULES.values() for trait in TRAITS)


class PlainEvent:
    """A plainly valid document: its kind, its fields (by wire name), its instant if it has one."""

    __slots__ = ("fields", "kind", "occurred_at")

    def __init__(self, kind: EventKind, fields: dict[str, Any], occurred_at: datetime | None):
        self.kind = kind
        self.fields = fields
        self.occurred_at = occurred_at


def plain_document(document: Any, *, now: datetime) -> PlainEvent | None:
    """The document as a plainly valid event at ``now``, or None if it is not plainly valid
    (then ``read_document`` and ``event_problems`` decide, and say why)."""
    if type(document) is not dict or len(document) != 1:
        return None
    [(name, fields)] = document.items()
    known = _RULES.get(name)
    if known is None or type(fields) is not dict:
        return None
    kind, rules, required = known
    for wire, value in fields.items():
        rule = rules.get(wire)
        if rule is None:
            return None  # unknown (refused even when null) or nested: read in full
        if value is None:
            continue  # an absent field
        kind_of, limit, test = rule
        if type(value) is not kind_of:  # exactly: a bool is no integer here
            return None
        if limit is not None and (len(value) > limit or "\x00" in value):
            return None
        if test is not None and not test(value):
            return None
    for wire in required:
        value = fields.get(wire)
        if value is None or value == "":
            return None
    occurred_at = fields.get("occurredAt")
    if occurred_at is None:
        return PlainEvent(kind, fields, None)
    try:
        instant = datetime.fromisoformat(occurred_at)
    except ValueError:
        return None
    if instant.tzinfo is None or instant < EARLIEST_OCCURRED_AT:
        return None
    if instant > now + FUTURE_TOLERANCE:
        return None
    return PlainEvent(kind, fields, instant)
