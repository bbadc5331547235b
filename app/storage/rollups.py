"""The hourly and daily rollups: the 15-minute counts summed per UTC hour and UTC day.

A write batch adds its 15-minute amounts to all three tables here, a user's erasure takes them
out, in the transaction that writes or deletes the events: every writer takes the tables in one
order (15-minute, hourly, daily) and each table's rows in key order, so two writers cannot
deadlock. On PostgreSQL a batch's three upserts are one statement (one round trip). Pruning raw
events leaves all rollups alone.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Table, and_, bindparam, delete, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.buckets import DAY_MICROS, HOUR_MICROS, ROLLUP_MICROS
from app.storage.models import Rollup, RollupDay, RollupHour

ROLLUP: Table = Rollup.__table__  # type: ignore[attr-defined]
ROLLUP_HOUR: Table = RollupHour.__table__  # type: ignore[attr-defined]
ROLLUP_DAY: Table = RollupDay.__table__  # type: ignore[attr-defined]
# (grain in microseconds, table), finer first
COARSE: tuple[tuple[int, Table], ...] = ((HOUR_MICROS, ROLLUP_HOUR), (DAY_MICROS, ROLLUP_DAY))

# (engine id, 15-minute bucket, metric, device, is_bot), as app/storage/writes.py keys them
RollupKey = tuple[int, int, str, str, bool]
_KEY = ("engine_id", "bucket", "metric", "device", "is_bot")


def folded(amounts: Mapping[RollupKey, int], grain: int) -> dict[RollupKey, int]:
    """The amounts summed per bucket of ``grain``, in key order; zero sums left out."""
    sums: defaultdict[RollupKey, int] = defaultdict(int)
    for (engine_id, bucket, metric, device, is_bot), amount in amounts.items():
        sums[(engine_id, bucket - bucket % grain, metric, device, is_bot)] += amount
    return {key: sums[key] for key in sorted(sums) if sums[key]}


async def add(conn: AsyncConnection, amounts: Mapping[RollupKey, int]) -> None:
    """Add a batch's 15-minute amounts to the 15-minute, hourly and daily rollups."""
    if not amounts:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(_ADD_ALL, amounts_parameter(amounts))
        return
    upserts = _UPSERTS[conn.dialect.name]
    for table, rows in zip(_TABLES, _grains(amounts), strict=True):
        values = [{**dict(zip(_KEY, key, strict=True)), "count": n} for key, n in rows.items()]
        await conn.execute(upserts[table.name], values)


def add_on_sqlite_thread(connection: sqlite3.Connection, amounts: Mapping[RollupKey, int]) -> None:
    """``add`` on the driver's own connection, in its thread (app/storage/batch_sqlite.py)."""
    add_arrays_on_sqlite_thread(connection, sqlite_amount_arrays(amounts))


def sqlite_amount_arrays(amounts: Mapping[RollupKey, int]) -> list[str]:
    """The amounts of each rollup table as one JSON array, the parameter of its upsert: one
    statement a table, not one step per row (why: batch_sqlite.py)."""
    return [
        orjson.dumps([(*key, n) for key, n in rows.items()]).decode() for rows in _grains(amounts)
    ]


def add_arrays_on_sqlite_thread(connection: sqlite3.Connection, arrays: list[str]) -> None:
    """Add ``sqlite_amount_arrays``'s arrays, on the driver's own connection, in its thread."""
    for table, array in zip(_TABLES, arrays, strict=True):
        connection.execute(_SQLITE_UPSERTS[table.name], (array,))


def amounts_parameter(amounts: Mapping[RollupKey, int]) -> dict[str, str]:
    """The 15-minute amounts as the one JSON parameter of ``COUNTED_AMOUNTS``: a text the
    server takes apart, where an array a table and column cost asyncpg eighteen encodings."""
    return {"amounts": orjson.dumps([(*key, n) for key, n in amounts.items()]).decode()}


def _grains(amounts: Mapping[RollupKey, int]) -> list[dict[RollupKey, int]]:
    """The amounts of each table of ``_TABLES``, in key order."""
    return [dict(sorted(amounts.items()))] + [folded(amounts, grain) for grain, _ in COARSE]


async def subtract_coarse(conn: AsyncConnection, amounts: Mapping[RollupKey, int]) -> None:
    """Take erased events' 15-minute amounts out of the hourly and daily rollups."""
    for grain, table in COARSE:
        await subtract(conn, table, folded(amounts, grain))


async def subtract(conn: AsyncConnection, table: Table, amounts: Mapping[RollupKey, int]) -> None:
    """Take the amounts out of one rollup table's counts, in key order; a count at zero goes.

    Two statements, each run for every row (``executemany``: one hand-off to the driver, not
    a round trip per row): a user's events spread over months touch a row per bucket, and the
    erasure's round that subtracts them holds writers off until it commits."""
    if not amounts:
        return
    rows = [
        {**{f"key_{name}": value for name, value in zip(_KEY, key, strict=True)}, "amount": n}
        for key, n in sorted(amounts.items())
    ]
    taken, emptied = _SUBTRACTS[table.name]
    await conn.execute(taken, rows)
    await conn.execute(emptied, rows)


def _subtracts(table: Table) -> tuple[Any, Any]:
    """The update that takes an amount out of a row's count, and the delete of the row if that
    left nothing, their key and amount bound by name (``key_engine_id``…, ``amount``)."""
    r = table.c
    where = and_(*(r[name] == bindparam(f"key_{name}") for name in _KEY))
    taken = update(table).where(where).values(count=r.count - bindparam("amount"))
    emptied = delete(table).where(where, r.count <= 0)
    return taken, emptied


def _upsert(builder: Any, table: Table) -> Any:
    statement = builder(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in _KEY],
        set_={"count": table.c.count + statement.excluded.count},
    )


_TABLES = (ROLLUP, ROLLUP_HOUR, ROLLUP_DAY)
_COLUMNS = (*_KEY, "count")
_TYPES = ("bigint", "bigint", "text", "text", "boolean", "bigint")
# One statement per dialect and table, run for every row: compiled once and cached.
_UPSERTS = {
    name: {table.name: _upsert(builder, table) for table in _TABLES}
    for name, builder in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_SUBTRACTS = {table.name: _subtracts(table) for table in _TABLES}


def sum_steps(counted: str, *, after: str) -> str:
    """The three upserts as the steps of a PostgreSQL ``WITH``, each adding up the rows of
    ``counted`` (an earlier step with the columns of ``_COLUMNS``, 15-minute buckets) per bucket
    of its table, in key order as ``_grains`` sorts it ("C": by code point, as Python does); the
    first one once the earlier step ``after`` is done, the tables taken in the order of
    ``_TABLES``, as every writer and erasure takes them."""
    grains = (ROLLUP_MICROS, *(grain for grain, _ in COARSE))
    steps = []
    previous = [after, *(f"{table.name}_added" for table in _TABLES[:-1])]
    for before, table, grain in zip(previous, _TABLES, grains, strict=True):
        t = table.name
        steps.append(
            f"{t}_added AS (INSERT INTO {t} AS r ({', '.join(_COLUMNS)}) "
            f"SELECT {', '.join(_KEY)}, sum(count) FROM (SELECT engine_id, "
            f"bucket - bucket % {grain} AS bucket, metric, device, is_bot, count FROM {counted}"
            f") AS c WHERE (SELECT count(*) FROM {before}) >= 0 "
            f"GROUP BY {', '.join(_KEY)} HAVING sum(count) <> 0 "
            'ORDER BY engine_id, bucket, metric COLLATE "C", device COLLATE "C", is_bot '
            f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET count = r.count + excluded.count "
            "RETURNING 1)"
        )
    return ", ".join(steps)


# The amounts of ``amounts_parameter`` as a relation of ``_COLUMNS``, for ``sum_steps``.
COUNTED_AMOUNTS = (
    "SELECT "
    + ", ".join(
        f"CAST(r.v ->> {n} AS {kind}) AS {name}"
        for n, (name, kind) in enumerate(zip(_COLUMNS, _TYPES, strict=True))
    )
    + " FROM jsonb_array_elements(CAST(:amounts AS jsonb)) AS r(v)"
)
_ADD_ALL = text(
    f"WITH counted AS ({COUNTED_AMOUNTS}), {sum_steps('counted', after='counted')} "
    f"SELECT count(*) FROM {_TABLES[-1].name}_added"
)
_SQLITE_UPSERTS = {
    table.name: (
        f"INSERT INTO {table.name} ({', '.join(_COLUMNS)}) SELECT "
        + ", ".join(f"json_extract(value, '$[{n}]')" for n in range(len(_COLUMNS)))
        # WHERE true: without it SQLite would read ON CONFLICT as a join's ON.
        + " FROM json_each(?) WHERE true ORDER BY key "
        f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET count = count + excluded.count"
    )
    for table in _TABLES
}
