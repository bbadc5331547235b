"""An empty sessionId or userId names no session or user (imports: test_bulk.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from app.domain.periods import Granularity, parse_zone, period_of_days
from app.domain.stats import Metric, StatsQuery
from app.services.runtime import Runtime
from app.services.stats import compute_stats
from tests.api.helpers import stored_events
from tests.conftest import Tenant
from tests.integration.stats_seed import principal_of, search, seed

AT = datetime(2025, 8, 1, 9, tzinfo=UTC)


async def test_empty_ids_are_stored_as_none_and_not_counted(
    runtime: Runtime, tenant: Tenant
) -> None:
    await seed(
        runtime,
        tenant,
        [
            search(AT, "a", session_id="", user_id=""),
            search(AT, "b", session_id="", user_id=""),
            search(AT, "c", session_id="s1", user_id="u1"),
        ],
    )
    stored = await stored_events(runtime)
    assert sorted((e.session_id or "-", e.user_id or "-") for e in stored) == [
        ("-", "-"),
        ("-", "-"),
        ("s1", "u1"),
    ]
    assert all(e.session_id != "" and e.user_id != "" for e in stored)
    query = StatsQuery(
        period=period_of_days(date(2025, 8, 1), date(2025, 8, 1), parse_zone("Etc/UTC")),
        granularity=Granularity.DAY,
        metrics=frozenset({Metric.SESSIONS, Metric.USERS, Metric.SEARCHES}),
    )
    report = await compute_stats(
        runtime=runtime, principal=await principal_of(runtime, tenant), query=query
    )
    assert report.series[Metric.SEARCHES].points[0].count == 3
    assert report.series[Metric.SESSIONS].points[0].count == 1
    assert report.series[Metric.USERS].points[0].count == 1
