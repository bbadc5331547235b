"""What a write batch asks of the database, decided before it gets there: which events are
candidates for a row, in what order they go in, and how each event's outcome is found."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.domain.events import EventKind
from app.storage.writes import NewEvent, Written


@dataclass(frozen=True, slots=True)
class Plan:
    """``order``: the candidates' indexes in the order they are inserted, as ``write_batch``
    inserts them: searches before the events that may name them, in each group the events
    without an eventId first, then the others in key order (two batches inserting the same
    eventIds take them in the same order, so they cannot deadlock). ``repeats``: each later
    event carrying an eventId already in the batch, and the index of its first."""

    order: list[int]
    repeats: dict[int, int]


def plan(events: Sequence[NewEvent]) -> Plan:
    first: dict[tuple[int, str], int] = {}
    repeats: dict[int, int] = {}
    searches: list[int] = []
    others: list[int] = []
    for index, event in enumerate(events):
        if event.event_id is not None:
            key = (event.engine_id, event.event_id)
            if key in first:
                repeats[index] = first[key]
                continue
            first[key] = index
        (searches if event.kind is EventKind.SEARCH else others).append(index)
    return Plan(_inserted_in_order(events, searches) + _inserted_in_order(events, others), repeats)


def _inserted_in_order(events: Sequence[NewEvent], indexes: list[int]) -> list[int]:
    plain = [i for i in indexes if events[i].event_id is None]
    keyed = [i for i in indexes if events[i].event_id is not None]
    return plain + sorted(keyed, key=lambda i: (events[i].engine_id, events[i].event_id or ""))


def outcomes(batch: Plan, written: Mapping[int, Written]) -> list[Written]:
    """Each event's outcome, in order, from the candidates' ones: a repeat answers as a
    duplicate of its first, whether that one was stored now or before."""
    result = []
    for index in range(len(written) + len(batch.repeats)):
        first = batch.repeats.get(index)
        if first is None:
            result.append(written[index])
        else:
            original = written[first]
            result.append(Written(original.id, True, original.query_id))
    return result


def names_search(event: NewEvent) -> bool:
    """Whether the event (a click, a feedback) names a search to link to by its queryId."""
    return event.query_id is not None and event.kind is not EventKind.SEARCH


def links_searches(events: Sequence[NewEvent], indexes: Sequence[int]) -> bool:
    """Whether one of these events names a search to link to by its queryId."""
    return any(names_search(events[i]) for i in indexes)
