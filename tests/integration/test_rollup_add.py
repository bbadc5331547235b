"""A batch's rollup amounts reach the 15-minute, hourly and daily tables exactly, in one call."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Table, select

from app.domain.buckets import DAY_MICROS, HOUR_MICROS, ROLLUP_MICROS
from app.services.runtime import Runtime
from app.storage import rollups
from app.storage.rollups import ROLLUP, ROLLUP_DAY, ROLLUP_HOUR, RollupKey
from app.storage.types import to_micros
from tests.api.helpers import engine_id
from tests.conftest import Tenant

DAY = 20_000 * DAY_MICROS


async def stored(runtime: Runtime, table: Table) -> dict[RollupKey, int]:
    c = table.c
    statement = select(c.engine_id, c.bucket, c.metric, c.device, c.is_bot, c.count)
    async with runtime.database.engine.connect() as conn:
        rows = (await conn.execute(statement)).all()
    # The bucket column reads back as an instant: compare in epoch microseconds.
    return {(row.engine_id, to_micros(row.bucket), *row[2:5]): row[5] for row in rows}


def expected(batches: list[dict[RollupKey, int]], grain: int) -> dict[RollupKey, int]:
    sums: Counter[RollupKey] = Counter()
    for amounts in batches:
        for (engine, bucket, metric, device, is_bot), amount in amounts.items():
            sums[(engine, bucket - bucket % grain, metric, device, is_bot)] += amount
    return dict(sums)


async def test_three_grains_from_one_call_and_added_to_what_is_there(
    runtime: Runtime, tenant: Tenant, other_tenant: Tenant
) -> None:
    one, two = (
        await engine_id(runtime, tenant.hashid),
        await engine_id(runtime, other_tenant.hashid),
    )
    first = {
        (one, DAY, "search", "desktop", False): 3,
        (one, DAY + ROLLUP_MICROS, "search", "desktop", False): 2,
        (one, DAY + HOUR_MICROS + 2 * ROLLUP_MICROS, "search", "desktop", False): 1,
        (one, DAY + ROLLUP_MICROS, "search_no_result", "mobile", True): 4,
        (two, DAY + DAY_MICROS - ROLLUP_MICROS, "click", "unknown", False): 5,
        (two, DAY + DAY_MICROS, "click", "unknown", False): 6,
        (one, DAY, "linked_click_position", "desktop", False): 2**40,
    }
    # The same counters again, and new ones: existing rows are added to, not replaced.
    second = {
        (one, DAY, "search", "desktop", False): 1,
        (two, DAY + DAY_MICROS, "click", "unknown", False): 1,
        (two, DAY + 3 * DAY_MICROS, "visit", "desktop", True): 7,
    }
    for amounts in (first, second, {}):
        async with runtime.database.writes.begin() as conn:
            await rollups.add(conn, amounts)

    batches = [first, second]
    assert await stored(runtime, ROLLUP) == expected(batches, ROLLUP_MICROS)
    assert await stored(runtime, ROLLUP_HOUR) == expected(batches, HOUR_MICROS)
    assert await stored(runtime, ROLLUP_DAY) == expected(batches, DAY_MICROS)
    assert expected(batches, DAY_MICROS)[(one, DAY, "search", "desktop", False)] == 7
