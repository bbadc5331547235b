"""The hourly and daily rollups: the 15-minute counts summed per UTC hour and UTC day.

Whatever adds to or takes from the 15-minute rollups (a write batch, a user's erasure) passes the
same amounts here, in the same transaction, after the 15-minute rows: every writer takes the
tables in one order and each table's rows in key order, so two writers cannot deadlock. Pruning
raw events leaves all rollups alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table, and_, delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.buckets import DAY_MICROS, HOUR_MICROS
from app.storage.models import RollupDay, RollupHour

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


async def add_coarse(conn: AsyncConnection, amounts: Mapping[RollupKey, int]) -> None:
    """Add a batch's 15-minute amounts to the hourly and daily rollups."""
    if not amounts:
        return
    upserts = _UPSERTS[conn.dialect.name]
    for grain, table in COARSE:
        rows = [
            {**dict(zip(_KEY, key, strict=True)), "count": count}
            for key, count in folded(amounts, grain).items()
        ]
        await conn.execute(upserts[table.name], rows)


async def subtract_coarse(conn: AsyncConnection, amounts: Mapping[RollupKey, int]) -> None:
    """Take erased events' 15-minute amounts out of the hourly and daily rollups."""
    for grain, table in COARSE:
        await subtract(conn, table, folded(amounts, grain))


async def subtract(conn: AsyncConnection, table: Table, amounts: Mapping[RollupKey, int]) -> None:
    """Take the amounts out of one rollup table's counts, in key order; a count at zero goes."""
    r = table.c
    for (engine_id, bucket, metric, device, is_bot), amount in sorted(amounts.items()):
        where = and_(
            r.engine_id == engine_id,
            r.bucket == bucket,
            r.metric == metric,
            r.device == device,
            r.is_bot.is_(is_bot),
        )
        await conn.execute(update(table).where(where).values(count=r.count - amount))
        await conn.execute(delete(table).where(where, r.count <= 0))


def _upsert(builder: Any, table: Table) -> Any:
    statement = builder(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c[name] for name in _KEY],
        set_={"count": table.c.count + statement.excluded.count},
    )


# One statement per dialect and table, run for every row: compiled once and cached.
_UPSERTS = {
    name: {table.name: _upsert(builder, table) for _, table in COARSE}
    for name, builder in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
