"""A write batch as one PostgreSQL statement: data-modifying ``WITH`` steps, its own transaction.

The steps of one statement all see the table as it was when the statement began; what one step
writes, another reads only through its ``RETURNING``. So the new rows' ids are taken from the
sequence first, and everything that needs them (the search a click of the batch names, whether
a search of the batch is clicked, the rollup counts) is worked out from them before or beside
the insert, not read back from the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from app.domain.buckets import ROLLUP_MICROS
from app.storage import rollups
from app.storage.asyncpg_statements import DriverStatement, PlannedForTableSize
from app.storage.batch_plan import Plan, names_search, outcomes
from app.storage.writes import (
    INSERTED,
    NewEvent,
    RollupKey,
    Written,
    linked_counters,
    rollup_counters,
)

# PostgreSQL's unique_violation.
UNIQUE_VIOLATION = "23505"


async def store_plain(
    driver: Any, rows: list[tuple[Any, ...]], amounts: dict[RollupKey, int]
) -> list[int]:
    """Insert a plain batch's rows and add its rollup amounts, on ``driver`` (an asyncpg
    connection that autocommits); the rows' ids, in order."""
    parameters = rollups.amounts_parameter(amounts) | _event_rows(rows)
    return sorted(row[0] for row in await _STORE_PLAIN.fetch(driver, parameters))


async def store(driver: Any, events: Sequence[NewEvent], batch: Plan) -> list[Written]:
    """Store any batch as ``write_batch`` does, in one statement on ``driver`` (an asyncpg
    connection that autocommits); each event's outcome, in order.

    An eventId looked up as not stored, but stored by a concurrent batch before this one's
    insert, makes the insert fail (unique_violation) and the statement write nothing: the
    caller tells it by ``is_lost_race`` and writes the batch again by ``write_batch``. The
    events linked to a search take its id, query text and count once the statement is done.
    """
    order = batch.order
    parameters = _event_rows([(*events[i].values(), *_counters(events[i])) for i in order])
    written: dict[int, Written] = {}
    with_event_id = any(events[i].event_id is not None for i in order)
    statement = _STORE_ANY_LOOKING_UP if with_event_id else _STORE_ANY
    for row in await statement.fetch(driver, parameters):
        index = order[row["position"] - 1]
        if row["linked"]:
            event = events[index]
            event.search_id, event.query = row["search_id"], row["query"]
            event.result_count = row["result_count"]
        written[index] = Written(row["id"], row["duplicate"], row["query_id"])
    return outcomes(batch, written)


def is_lost_race(error: IntegrityError) -> bool:
    return getattr(error.orig, "sqlstate", None) == UNIQUE_VIOLATION


def _counters(event: NewEvent) -> tuple[list[Any], list[Any]]:
    """The rollup counters a candidate adds to in any case, and those it adds to only if linked
    to a search, which the statement finds out: each ``[[metric, amount], …]``."""
    linkable = event.search_id is None and names_search(event)
    return rollup_counters(event), linked_counters(event) if linkable else []


# The event table's columns in ``INSERTED`` order, as PostgreSQL types. Written out, not
# compiled from the table: strings go as ``text``, because a cast to ``varchar(n)`` would cut an
# over-long value silently, where the insert into the column refuses it.
_EVENT_TYPES = {
    "engine_id": "bigint",
    "kind": "text",
    "occurred_at": "bigint",
    "received_at": "bigint",
    "event_id": "text",
    "door": "text",
    "session_id": "text",
    "user_id": "text",
    "device": "text",
    "is_bot": "boolean",
    "query": "text",
    "query_id": "text",
    "result_count": "integer",
    "search_id": "bigint",
    "clicked": "boolean",
    "document_id": "text",
    "content_source_id": "text",
    "product_type": "text",
    "rank": "integer",
    "page": "integer",
    "score": "smallint",
    "payload": "jsonb",
}


def _event_rows(rows: list[tuple[Any, ...]]) -> dict[str, str]:
    """The rows as one JSON array of arrays (each in ``INSERTED`` order, then any values
    ``_event_relation``'s ``more`` names), the parameter ``_event_relation`` takes apart. One
    text for the batch: bound as an array a column, every value cost asyncpg an encoding and
    type checks on the busy event loop (about half the flusher's time there), where the server,
    with a core of its own, reads the JSON."""
    return {"events": orjson.dumps(rows).decode()}


def _event_relation(more: dict[str, str] | None = None) -> str:
    """The rows of ``_event_rows`` as a relation ``a`` of their columns, those of ``more``
    (name: type; given as JSON values) beside them, and ``position``, from 1."""
    columns = [_column(n, name, _EVENT_TYPES[name]) for n, name in enumerate(INSERTED)]
    columns += [
        f"CAST(r.v -> {n} AS {kind}) AS {name}"
        for n, (name, kind) in enumerate((more or {}).items(), start=len(INSERTED))
    ]
    return (
        f"(SELECT {', '.join(columns)}, r.position "
        "FROM jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS r(v, position)) AS a"
    )


def _column(n: int, name: str, kind: str) -> str:
    """Element ``n`` of a row as the column's value: its text, cast (the payload is JSON
    text)."""
    if kind == "text":
        return f"r.v ->> {n} AS {name}"
    return f"CAST(r.v ->> {n} AS {kind}) AS {name}"


def _store_plain() -> str:
    """The rows inserted in the order given, so the sequence hands out ascending ids in that
    order (sorted, they are the rows' ids); the rollup upserts after them, reading their
    RETURNING, so the tables are taken in the order every writer takes them."""
    columns = ", ".join(INSERTED)
    insert = (
        f"INSERT INTO event ({columns}) SELECT {columns} FROM {_event_relation()} "
        "ORDER BY position RETURNING id"
    )
    return (
        f"WITH event_added AS ({insert}), counted AS ({rollups.COUNTED_AMOUNTS}), "
        f"{rollups.sum_steps('counted', after='event_added')} SELECT id FROM event_added"
    )


_STORE_PLAIN = DriverStatement(text(_store_plain()))
_COLUMNS = ", ".join(INSERTED)

# Each step of ``_STORE_ANY`` in turn, named as the steps of ``write_batch``. Each reads the
# step before it, in one pass: two steps joined on a column would be joined row by row, since
# the planner cannot know how many rows a step holds.
# - checked: each candidate, with the row already stored under its eventId if there is one.
#   The table is read only if some candidate has an eventId (the EXISTS, which names nothing
#   of the table, is checked once, before): PostgreSQL keeps a statement's plan, and one
#   made while the table was new and small joins by hashing the whole table, until the next
#   ANALYZE re-plans it (on a new database, a batch took 2 ms, then 7 ms after 60,000 rows).
#   A batch that has an eventId runs the statement prepared apart, planned again as the table
#   grows (``_STORE_ANY_LOOKING_UP``);
# - fresh: those to insert, each with its id from the sequence (a step calling a volatile
#   function is computed once), taken in the candidates' order;
# - grouped: each fresh row beside the batch's last search (the highest id) of its engine and
#   queryId, if there is one, and whether a click of the batch names that queryId;
# - placed: each fresh row as stored. One but a search, naming a queryId, takes the id, query
#   text and count of its search: the batch's last one, else the last one stored (``kind ||
#   ''`` as SEARCHES writes it: the partial index of searches; all of them, then the last one
#   kept, as ``ORDER BY id DESC LIMIT 1`` would walk the primary key backwards through every
#   row of the table instead of taking the few rows of the index). The batch's last search of a
#   queryId a click of the batch names is inserted already clicked (the update after the
#   insert cannot see its row);
# - event_added: the insert, in the candidates' order (eventIds in key order, as every writer);
# - search_marked: the stored searches clicked for the first time (one a concurrent batch
#   marked meanwhile is read again once that one committed, and left alone);
# - counted: the 15-minute counts of the inserted rows (those of a link only if linked), and
#   one per search clicked for the first time, at its own time; then the rollups, once the
#   insert is done.
_PLACED = {
    "query": "placed_query",
    "result_count": "placed_result_count",
    "search_id": "placed_search_id",
    "clicked": "clicked_now",
}
_FRESH_COLUMNS = f"{_COLUMNS}, position, counters, linked_counters"
_STORE_ANY = DriverStatement(
    text(
        f"""
WITH checked AS (
    SELECT a.*, e.id AS stored_id, e.query_id AS stored_query_id
    FROM {_event_relation({"counters": "jsonb", "linked_counters": "jsonb"})}
    LEFT JOIN (
        SELECT e.id, e.query_id, e.engine_id, e.event_id FROM event e
        WHERE EXISTS (
            SELECT FROM jsonb_array_elements(CAST(:events AS jsonb)) AS k(v)
            WHERE k.v ->> {INSERTED.index("event_id")} IS NOT NULL
        )
    ) e ON e.engine_id = a.engine_id AND e.event_id = a.event_id
), fresh AS (
    SELECT nextval(pg_get_serial_sequence('event', 'id')) AS id, {_FRESH_COLUMNS}
    FROM checked WHERE stored_id IS NULL ORDER BY position
), grouped AS (
    SELECT f.*, f.kind <> 'search' AND f.query_id IS NOT NULL AS names_search,
        first_value(f.kind = 'search') OVER latest AS batch_has,
        first_value(f.id) OVER latest AS batch_id,
        first_value(f.query) OVER latest AS batch_query,
        first_value(f.result_count) OVER latest AS batch_result_count,
        bool_or(f.kind = 'click') OVER (PARTITION BY f.engine_id, f.query_id) AS batch_clicks
    FROM fresh f
    WINDOW latest AS (
        PARTITION BY f.engine_id, f.query_id ORDER BY f.kind = 'search' DESC, f.id DESC
    )
), placed AS (
    SELECT DISTINCT ON (g.position) g.*, s.id IS NOT NULL AS linked,
        coalesce(s.id, g.search_id) AS placed_search_id,
        CASE WHEN s.id IS NULL THEN g.query ELSE s.query END AS placed_query,
        CASE WHEN s.id IS NULL THEN g.result_count ELSE s.result_count END
            AS placed_result_count,
        g.kind = 'search' AND g.query_id IS NOT NULL AND g.id = g.batch_id AND g.batch_clicks
            AS clicked_now
    FROM grouped g LEFT JOIN LATERAL (
        SELECT g.batch_id AS id, g.batch_query AS query, g.batch_result_count AS result_count
        WHERE g.batch_has
        UNION ALL
        SELECT e.id, e.query, e.result_count FROM event e
        WHERE NOT g.batch_has AND e.engine_id = g.engine_id AND e.query_id = g.query_id
        AND e.kind || '' = 'search'
    ) s ON g.names_search
    ORDER BY g.position, s.id DESC NULLS LAST
), event_added AS (
    INSERT INTO event (id, {_COLUMNS})
    SELECT id, {", ".join(_PLACED.get(name, name) for name in INSERTED)}
    FROM placed ORDER BY position
    RETURNING 1
), search_marked AS (
    UPDATE event SET clicked = true
    WHERE id IN (SELECT placed_search_id FROM placed WHERE kind = 'click') AND NOT clicked
    RETURNING engine_id, occurred_at, device, is_bot
), counted AS (
    SELECT p.engine_id, p.occurred_at - p.occurred_at % {ROLLUP_MICROS} AS bucket,
        c.counter ->> 0 AS metric, p.device, p.is_bot, (c.counter ->> 1)::bigint AS count
    FROM placed p CROSS JOIN LATERAL jsonb_array_elements(
        CASE WHEN p.linked THEN p.counters || p.linked_counters ELSE p.counters END
    ) AS c(counter)
    UNION ALL
    SELECT engine_id, occurred_at - occurred_at % {ROLLUP_MICROS}, 'search_clicked', device,
        is_bot, 1
    FROM placed WHERE clicked_now
    UNION ALL
    SELECT engine_id, occurred_at - occurred_at % {ROLLUP_MICROS}, 'search_clicked', device,
        is_bot, 1
    FROM search_marked
), {rollups.sum_steps("counted", after="event_added")}
SELECT position, id, false AS duplicate, query_id, linked, placed_search_id AS search_id,
    placed_query AS query, placed_result_count AS result_count
FROM placed
UNION ALL
SELECT position, stored_id, true, stored_query_id, false, NULL, NULL, NULL
FROM checked WHERE stored_id IS NOT NULL
"""
    )
)
# The same statement for a batch with an eventId to look up, whose plan reads the table: made
# again each time the table has doubled, never kept from a table a fraction of its size.
_STORE_ANY_LOOKING_UP = PlannedForTableSize(_STORE_ANY, "event")
