"""The one place where a stats query becomes SQL.

Local buckets arrive as a table of [lo, hi) instants (an array or JSON parameter) that the counts
join: the database walks each bucket's range through an index, so DST days, odd offsets and
month lengths cost nothing special. Unfiltered counts read the rollups (daily, hourly or
15-minute rows, the coarsest that fit each bucket); filtered ones scan events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    Table,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import CTE

from app.domain.buckets import GRAINS, grain_ranges
from app.domain.events import EventKind
from app.domain.stats import Breakdown, StatsFilter
from app.storage.models import Event, Rollup, RollupDay, RollupHour
from app.storage.types import to_micros

EVENT: Table = Event.__table__  # type: ignore[attr-defined]
ROLLUP: Table = Rollup.__table__  # type: ignore[attr-defined]
# (grain in microseconds, table), as app/domain/buckets.py's GRAINS
_ROLLUP_TABLES: tuple[tuple[int, Table], ...] = tuple(
    zip(
        GRAINS,
        (ROLLUP, RollupHour.__table__, RollupDay.__table__),  # type: ignore[attr-defined]
        strict=True,
    )
)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which events a question covers: engines, resolved index filters, time bounds."""

    engine_ids: tuple[int, ...]
    filter: StatsFilter
    # (index name, engine id or None for any engine)
    indices: tuple[tuple[str, int | None], ...]
    start: datetime
    end: datetime


# counter -> (predicate on an event row, amount it adds)
def _raw_counter(name: str) -> tuple[ColumnElement[bool], ColumnElement[Any]]:
    c = EVENT.c
    one: ColumnElement[Any] = literal(1)
    kinds = {k.value: k.value for k in EventKind}
    table: dict[str, tuple[ColumnElement[bool], ColumnElement[Any]]] = {
        "view": (c.kind == kinds["view"], one),
        "search": (c.kind == kinds["search"], one),
        "visit": (c.kind == kinds["visit"], one),
        "click": (c.kind == kinds["click"], one),
        "feedback": (c.kind == kinds["feedback"], one),
        "feedback_positive": (and_(c.kind == kinds["feedback"], c.score > 0), one),
        "feedback_negative": (and_(c.kind == kinds["feedback"], c.score < 0), one),
        "search_no_result": (and_(c.kind == kinds["search"], c.result_count == 0), one),
        "search_clicked": (and_(c.kind == kinds["search"], c.clicked.is_(True)), one),
        "linked_click": (_linked_click(), one),
        # In 64 bits: rank is a 32-bit column, and rank + 1 of the largest one is past its range
        # (PostgreSQL refuses it; the rollups, added up in Python, count it).
        "linked_click_position": (_linked_click(), cast(c.rank, BigInteger) + 1),
    }
    return table[name]


_KIND_OF_COUNTER = {
    "view": "view",
    "search": "search",
    "visit": "visit",
    "click": "click",
    "feedback": "feedback",
    "feedback_positive": "feedback",
    "feedback_negative": "feedback",
    "search_no_result": "search",
    "search_clicked": "search",
    "linked_click": "click",
    "linked_click_position": "click",
}


def _linked_click() -> ColumnElement[bool]:
    c = EVENT.c
    return and_(c.kind == EventKind.CLICK.value, c.search_id.is_not(None), c.rank.is_not(None))


def buckets_cte(dialect: str, boundaries: Sequence[tuple[datetime, datetime]]) -> CTE:
    """The local buckets as a table (idx, lo, hi), passed as one or two array parameters.

    The statement's text is the same whatever the period, so SQLAlchemy compiles it once and
    PostgreSQL can reuse its prepared statement.
    """
    lows = [to_micros(lo) for lo, _ in boundaries]
    highs = [to_micros(hi) for _, hi in boundaries]
    if dialect == "postgresql":
        table = text(
            "SELECT CAST(t.n - 1 AS INTEGER) AS idx, t.lo, t.hi FROM unnest("
            "CAST(:bucket_lows AS BIGINT[]), CAST(:bucket_highs AS BIGINT[])"
            ") WITH ORDINALITY AS t(lo, hi, n)"
        ).bindparams(bucket_lows=lows, bucket_highs=highs)
    else:
        table = text(
            "SELECT CAST(key AS INTEGER) AS idx, CAST(json_extract(value, '$[0]') AS INTEGER) "
            "AS lo, CAST(json_extract(value, '$[1]') AS INTEGER) AS hi FROM json_each(:buckets)"
        ).bindparams(buckets=orjson.dumps(list(zip(lows, highs, strict=True))).decode())
    return table.columns(idx=Integer(), lo=BigInteger(), hi=BigInteger()).cte("b")


async def counters_from_rollups(
    conn: AsyncConnection,
    scope: Scope,
    boundaries: Sequence[tuple[datetime, datetime]],
    counters: Sequence[str],
) -> list[tuple[int, int, str, int]]:
    """Rows of (engine id, bucket index, counter, sum) read from the rollups.

    Each bucket is read from the coarsest rollups that fit it (grain_ranges): daily rows for
    whole UTC days, hourly rows for whole hours, 15-minute rows for the rest. A bucket may come
    back as one row per grain; the caller adds them up.
    """
    ranges: dict[int, list[tuple[int, int, int]]] = {grain: [] for grain in GRAINS}
    for index, (lo, hi) in enumerate(boundaries):
        for grain, first, last in grain_ranges(to_micros(lo), to_micros(hi)):
            ranges[grain].append((index, first, last))
    dialect = conn.dialect.name
    parts = [
        _rollup_sums(scope, counters, _ranges_cte(dialect, table.name, ranges[grain]), table)
        for grain, table in _ROLLUP_TABLES
        if ranges[grain]
    ]
    if not parts:
        return []
    statement = parts[0] if len(parts) == 1 else union_all(*parts)
    rows = await conn.execute(statement)
    return [(row[0], row[1], row[2], int(row[3])) for row in rows]


def _rollup_sums(scope: Scope, counters: Sequence[str], ranges: CTE, table: Table) -> Select[Any]:
    r = table.c
    conditions = [
        r.engine_id.in_(scope.engine_ids),
        r.bucket >= ranges.c.lo,
        r.bucket < ranges.c.hi,
        r.metric.in_(counters),
    ]
    if not scope.filter.include_bots:
        conditions.append(r.is_bot.is_(False))
    if scope.filter.device is not None:
        conditions.append(r.device == scope.filter.device.value)
    return (
        select(r.engine_id, ranges.c.idx, r.metric, func.sum(r.count))
        .select_from(ranges.join(table, and_(*conditions)))
        .group_by(r.engine_id, ranges.c.idx, r.metric)
    )


def _ranges_cte(dialect: str, name: str, ranges: Sequence[tuple[int, int, int]]) -> CTE:
    """(bucket index, lo, hi) rows as a table named after the rollup table it reads."""
    if dialect == "postgresql":
        table = text(
            f"SELECT t.idx, t.lo, t.hi FROM unnest(CAST(:{name}_idx AS INTEGER[]), "
            f"CAST(:{name}_lo AS BIGINT[]), CAST(:{name}_hi AS BIGINT[])) AS t(idx, lo, hi)"
        ).bindparams(
            **{
                f"{name}_idx": [index for index, _, _ in ranges],
                f"{name}_lo": [lo for _, lo, _ in ranges],
                f"{name}_hi": [hi for _, _, hi in ranges],
            }
        )
    else:
        table = text(
            "SELECT CAST(json_extract(value, '$[0]') AS INTEGER) AS idx, "
            "CAST(json_extract(value, '$[1]') AS INTEGER) AS lo, "
            f"CAST(json_extract(value, '$[2]') AS INTEGER) AS hi FROM json_each(:{name})"
        ).bindparams(**{name: orjson.dumps(ranges).decode()})
    return table.columns(idx=Integer(), lo=BigInteger(), hi=BigInteger()).cte(f"b_{name}")


async def counters_from_events(
    conn: AsyncConnection,
    scope: Scope,
    boundaries: Sequence[tuple[datetime, datetime]],
    counters: Sequence[str],
) -> list[tuple[int, int, str, int]]:
    """The same rows as counters_from_rollups, counted from raw events under any filter."""
    b = buckets_cte(conn.dialect.name, boundaries)
    c = EVENT.c
    sums = [
        func.coalesce(func.sum(case((predicate, amount), else_=0)), 0).label(f"n{i}")
        for i, (predicate, amount) in enumerate(_raw_counter(name) for name in counters)
    ]
    kinds = sorted({_KIND_OF_COUNTER[name] for name in counters})
    joined = and_(
        c.kind.in_(kinds),
        c.occurred_at >= b.c.lo,
        c.occurred_at < b.c.hi,
        *_event_conditions(scope),
    )
    statement = (
        select(c.engine_id, b.c.idx, *sums)
        .select_from(b.join(EVENT, joined))
        .group_by(c.engine_id, b.c.idx)
    )
    rows = await conn.execute(statement)
    return [
        (row[0], row[1], name, int(row[2 + i])) for row in rows for i, name in enumerate(counters)
    ]


async def distinct_counts(
    conn: AsyncConnection,
    scope: Scope,
    boundaries: Sequence[tuple[datetime, datetime]],
    column_name: str,
) -> list[tuple[int, int]]:
    """Rows of (bucket index, distinct non-null values of the column across the engines)."""
    b = buckets_cte(conn.dialect.name, boundaries)
    c = EVENT.c
    target = c[column_name]
    joined = and_(
        # Every kind, spelled out: it lets the (engine, kind, time) index serve the scan.
        c.kind.in_([kind.value for kind in EventKind]),
        c.occurred_at >= b.c.lo,
        c.occurred_at < b.c.hi,
        target.is_not(None),
        *_event_conditions(scope),
    )
    statement = (
        select(b.c.idx, func.count(target.distinct()))
        .select_from(b.join(EVENT, joined))
        .group_by(b.c.idx)
    )
    return [(row[0], int(row[1])) for row in await conn.execute(statement)]


async def top_values(
    conn: AsyncConnection, scope: Scope, breakdown: Breakdown, limit: int
) -> list[tuple[str, int]]:
    """The most frequent values, ties broken by the value itself so pages are stable."""
    statement = _top_statement(scope, breakdown, limit, conn.dialect.name)
    return [(row[0], int(row[1])) for row in await conn.execute(statement)]


def _top_statement(scope: Scope, breakdown: Breakdown, limit: int, dialect: str) -> Select[Any]:
    c = EVENT.c
    if breakdown is Breakdown.TOP_DOCUMENTS:
        key, kind, extra = c.document_id, EventKind.CLICK, []
    elif breakdown is Breakdown.TOP_NO_RESULT_QUERIES:
        key, kind, extra = c.query, EventKind.SEARCH, [c.result_count == 0]
    else:
        key, kind, extra = c.query, EventKind.SEARCH, []
    count = func.count().label("n")
    # Ties in code-point order, as SQLite compares text: a PostgreSQL database's own collation
    # (en_US, ICU) would order them, and cut them at the limit, by language rules instead.
    tie_order = key.collate("C") if dialect == "postgresql" else key
    return (
        select(key, count)
        .where(
            c.kind == kind.value,
            c.occurred_at >= scope.start,
            c.occurred_at < scope.end,
            key.is_not(None),
            *extra,
            *_event_conditions(scope),
        )
        .group_by(key)
        .order_by(count.desc(), tie_order.asc())
        .limit(limit)
    )


def _event_conditions(scope: Scope) -> list[ColumnElement[bool]]:
    c = EVENT.c
    flt = scope.filter
    conditions: list[ColumnElement[bool]] = [c.engine_id.in_(scope.engine_ids)]
    if not flt.include_bots:
        conditions.append(c.is_bot.is_(False))
    if flt.device is not None:
        conditions.append(c.device == flt.device.value)
    if flt.query is not None:
        conditions.append(c.query == flt.query)
    if flt.document_id is not None:
        conditions.append(c.document_id == flt.document_id)
    if flt.product_types:
        conditions.append(c.product_type.in_([p.value for p in flt.product_types]))
    if scope.indices:
        conditions.append(
            or_(false(), *(_index_condition(name, eid) for name, eid in scope.indices))
        )
    return conditions


def _index_condition(name: str, engine_id: int | None) -> ColumnElement[bool]:
    c = EVENT.c
    if engine_id is None:
        return c.content_source_id == name
    return and_(c.content_source_id == name, c.engine_id == engine_id)
