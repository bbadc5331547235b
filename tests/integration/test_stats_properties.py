"""Property: every event in the period lands in exactly one bucket, the one of its local unit."""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.domain.periods import Granularity, parse_zone, period_of_days
from app.domain.stats import Metric, StatsQuery
from app.services import accounts
from app.services.runtime import Runtime
from app.services.stats import compute_stats
from tests.conftest import Tenant
from tests.integration.stats_seed import principal_of, search, seed

ZONES = [
    "Etc/UTC",
    "America/New_York",
    "Europe/Madrid",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Apia",
    # Midnight happens twice (clocks fall back to 00:00) or not at all (they jump to 01:00).
    "Atlantic/Azores",
    "America/Havana",
    "Africa/Cairo",
    "Asia/Amman",
    "Antarctica/Vostok",
    "America/Sao_Paulo",
]
WINDOW_START = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW_SECONDS = 2 * 366 * 86400

instants = st.integers(0, WINDOW_SECONDS).map(lambda s: WINDOW_START + timedelta(seconds=s))
spans = {
    Granularity.HOUR: 6,
    Granularity.DAY: 60,
    Granularity.WEEK: 200,
    Granularity.MONTH: 500,
}


def half_hours(days: int) -> list[datetime]:
    """Events every half hour, which the test spreads over the period and a day either side."""
    return [WINDOW_START + timedelta(minutes=30 * i) for i in range(days * 48)]


def local_unit(instant: datetime, zone: str, granularity: Granularity) -> tuple[int, ...]:
    local = instant.astimezone(parse_zone(zone))
    if granularity is Granularity.HOUR:
        return (local.year, local.month, local.day, local.hour)
    if granularity is Granularity.DAY:
        return (local.year, local.month, local.day)
    if granularity is Granularity.WEEK:
        return tuple(local.isocalendar()[:2])
    return (local.year, local.month)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Days, weeks and months whose first midnight is followed by a second one, or is skipped.
@example(half_hours(5), "Atlantic/Azores", Granularity.DAY, date(2025, 10, 25), 0.04)
@example(half_hours(5), "Asia/Amman", Granularity.DAY, date(2021, 10, 28), 0.04)
@example(half_hours(64), "America/Havana", Granularity.MONTH, date(2026, 10, 1), 0.121)
@example(half_hours(24), "Antarctica/Vostok", Granularity.WEEK, date(2023, 12, 11), 0.105)
@example(half_hours(5), "America/Sao_Paulo", Granularity.DAY, date(2018, 11, 3), 0.04)
@example(half_hours(3), "Atlantic/Azores", Granularity.HOUR, date(2025, 10, 26), 0.0)
@given(
    events=st.lists(instants, min_size=0, max_size=40),
    zone=st.sampled_from(ZONES),
    granularity=st.sampled_from(list(Granularity)),
    first=st.dates(date(2024, 1, 1), date(2025, 12, 1)),
    length=st.floats(0, 1),
)
async def test_buckets_partition_the_period(
    runtime: Runtime,
    tenant: Tenant,
    events: list[datetime],
    zone: str,
    granularity: Granularity,
    first: date,
    length: float,
) -> None:
    engine = await accounts.create_engine(database=runtime.database, account=tenant.account)
    # Events clustered around the period, so that most land inside and some just outside.
    last = first + timedelta(days=int(length * spans[granularity]))
    period = period_of_days(first, last, parse_zone(zone))
    shifted = [
        period.start
        + (e - WINDOW_START) % (period.end - period.start + timedelta(days=2))
        - timedelta(days=1)
        for e in events
    ]
    for chunk in range(0, len(shifted), 1000):  # a batch holds at most 1,000 events
        drafts = [search(t, engine=engine.hashid) for t in shifted[chunk : chunk + 1000]]
        await seed(runtime, tenant, drafts)

    report = await compute_stats(
        runtime=runtime,
        principal=await principal_of(runtime, tenant),
        query=StatsQuery(
            period=period,
            granularity=granularity,
            engines=(engine.hashid,),
            metrics=frozenset({Metric.SEARCHES}),
        ),
    )
    points = report.series[Metric.SEARCHES].points
    inside = [t for t in shifted if period.start <= t < period.end]
    assert sum(p.count for p in points) == len(inside)

    starts = [p.start for p in points]
    assert starts == sorted(starts)
    expected = [0] * len(points)
    for t in inside:
        index = bisect.bisect_right(starts, t) - 1
        assert index >= 0
        # The bucket holding an event is the one of the event's own local hour/day/week/month.
        assert local_unit(starts[index], zone, granularity) == local_unit(t, zone, granularity)
        expected[index] += 1
    assert [p.count for p in points] == expected
    # One bucket per local unit: no unit is split in two or left out.
    units = [local_unit(s, zone, granularity) for s in starts]
    # (A repeated wall-clock hour, when clocks fall back, is two buckets of the same hour.)
    assert len(set(units)) == len(units) or granularity is Granularity.HOUR
