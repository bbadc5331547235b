"""Stats on both databases: calendars in awkward zones, rates, breakdowns, deadlines."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.domain.events import EventDraft, EventKind
from app.domain.periods import Granularity, Period, parse_zone, period_of_days
from app.domain.stats import Breakdown, Metric, Rate, StatsFilter, StatsQuery
from app.errors import Timeout
from app.services import accounts
from app.services.runtime import Runtime, build_runtime
from app.services.stats import StatsReport, compute_stats
from app.settings import Settings
from tests.conftest import Tenant, make_tenant
from tests.integration.stats_seed import click, principal_of, search, seed

ALL_COUNTS = frozenset(Metric)
ALL_RATES = frozenset(Rate)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def ask(
    runtime: Runtime,
    tenant: Tenant,
    first: date,
    last: date,
    zone: str = "Etc/UTC",
    granularity: Granularity = Granularity.DAY,
    **options: object,
) -> StatsReport:
    query = StatsQuery(
        period=period_of_days(first, last, parse_zone(zone)),
        granularity=granularity,
        metrics=ALL_COUNTS,
        rates=ALL_RATES,
        **options,  # type: ignore[arg-type]
    )
    return await compute_stats(
        runtime=runtime, principal=await principal_of(runtime, tenant), query=query
    )


def counts(report: StatsReport, metric: Metric) -> list[int]:
    return [p.count for p in report.series[metric].points]


def starts(report: StatsReport) -> list[str]:
    return [s.isoformat() for s in report.starts]


async def test_madrid_autumn_day_has_25_hours(runtime: Runtime, tenant: Tenant) -> None:
    # 2025-10-26: 03:00 CEST falls back to 02:00 CET; the day lasts 25 hours.
    await seed(
        runtime,
        tenant,
        [
            search(at("2025-10-26T02:30:00+02:00")),  # first 02:30
            search(at("2025-10-26T02:30:00+01:00")),  # second 02:30, an hour later
            search(at("2025-10-26T23:30:00+01:00")),
        ],
    )
    hourly = await ask(
        runtime, tenant, date(2025, 10, 26), date(2025, 10, 26), "Europe/Madrid", Granularity.HOUR
    )
    assert len(hourly.starts) == 25
    assert "2025-10-26T02:00:00+02:00" in starts(hourly)
    assert "2025-10-26T02:00:00+01:00" in starts(hourly)
    by_start = dict(zip(starts(hourly), counts(hourly, Metric.SEARCHES), strict=True))
    assert by_start["2025-10-26T02:00:00+02:00"] == 1
    assert by_start["2025-10-26T02:00:00+01:00"] == 1
    assert by_start["2025-10-26T23:00:00+01:00"] == 1
    daily = await ask(runtime, tenant, date(2025, 10, 25), date(2025, 10, 27), "Europe/Madrid")
    assert counts(daily, Metric.SEARCHES) == [0, 3, 0]


def unit_of(instant: datetime, zone: ZoneInfo, granularity: Granularity) -> tuple[object, ...]:
    """The local hour (with its offset: a repeated hour is two), day, ISO week or month."""
    local = instant.astimezone(zone)
    if granularity is Granularity.HOUR:
        return (local.date(), local.hour, local.utcoffset())
    if granularity is Granularity.DAY:
        return (local.date(),)
    if granularity is Granularity.WEEK:
        return tuple(local.isocalendar()[:2])
    return (local.year, local.month)


def scanned_starts(
    zone: ZoneInfo, lo: datetime, hi: datetime, granularity: Granularity
) -> list[datetime]:
    """The quarter hours of [lo, hi) where the local unit changes: where buckets must start.

    Every offset since 2000 is a whole number of quarter hours, and so is every instant at
    which a zone's clocks changed.
    """
    starts: list[datetime] = []
    previous: tuple[object, ...] | None = None
    instant = lo
    while instant < hi:
        unit = unit_of(instant, zone, granularity)
        if unit != previous:
            starts.append(instant)
            previous = unit
        instant += timedelta(minutes=15)
    return starts


@pytest.mark.parametrize("raw", [False, True], ids=["rollups", "events"])
@pytest.mark.parametrize(
    ("zone_name", "granularity", "first", "last"),
    [
        # Clocks fall back from 01:00 to 00:00: midnight happens twice, the day lasts 25 hours.
        ("Atlantic/Azores", Granularity.DAY, date(2025, 10, 25), date(2025, 10, 27)),
        ("Atlantic/Azores", Granularity.HOUR, date(2025, 10, 26), date(2025, 10, 26)),
        ("America/Havana", Granularity.DAY, date(2025, 11, 1), date(2025, 11, 3)),
        ("America/Havana", Granularity.MONTH, date(2026, 10, 1), date(2026, 11, 30)),
        # From 02:00 +07:00 back to 00:00 +05:00 on a Monday: a week's start happens twice.
        ("Antarctica/Vostok", Granularity.WEEK, date(2023, 12, 11), date(2023, 12, 31)),
        # Clocks jump from 00:00 to 01:00: the day starts at 01:00.
        ("America/Sao_Paulo", Granularity.DAY, date(2018, 11, 3), date(2018, 11, 5)),
    ],
)
async def test_a_midnight_that_repeats_starts_one_bucket(
    runtime: Runtime,
    tenant: Tenant,
    zone_name: str,
    granularity: Granularity,
    first: date,
    last: date,
    raw: bool,
) -> None:
    zone = ZoneInfo(zone_name)
    utc_days = (datetime.combine(first, time(), UTC), datetime.combine(last, time(), UTC))
    day_starts = {
        t.astimezone(zone).date(): t
        for t in scanned_starts(
            zone, utc_days[0] - timedelta(days=1), utc_days[1] + timedelta(days=2), Granularity.DAY
        )
    }
    start, end = day_starts[first], day_starts[last + timedelta(days=1)]
    assert period_of_days(first, last, zone) == Period(start, end, zone)
    events = [start - timedelta(days=1) + timedelta(minutes=30 * i) for i in range(48)]
    while events[-1] < end + timedelta(days=1):
        events.append(events[-1] + timedelta(minutes=30))
    for chunk in range(0, len(events), 1000):
        await seed(runtime, tenant, [search(t) for t in events[chunk : chunk + 1000]])

    report = await ask(
        runtime,
        tenant,
        first,
        last,
        zone_name,
        granularity,
        filter=StatsFilter(query="q" if raw else None),
    )
    expected_starts = scanned_starts(zone, start, end, granularity)
    assert [s.astimezone(UTC) for s in report.starts] == expected_starts
    units = Counter(unit_of(t, zone, granularity) for t in events if start <= t < end)
    expected = [units[unit_of(s, zone, granularity)] for s in expected_starts]
    assert counts(report, Metric.SEARCHES) == expected
    assert sum(expected) == sum(start <= t < end for t in events)


async def test_lord_howe_half_hour_shift(runtime: Runtime, tenant: Tenant) -> None:
    # 2025-10-05: 02:00 +10:30 jumps to 02:30 +11:00; the 02 hour lasts 30 minutes.
    await seed(
        runtime,
        tenant,
        [
            search(at("2025-10-05T01:59:00+10:30")),
            search(at("2025-10-05T02:45:00+11:00")),
        ],
    )
    hourly = await ask(
        runtime,
        tenant,
        date(2025, 10, 5),
        date(2025, 10, 5),
        "Australia/Lord_Howe",
        Granularity.HOUR,
    )
    by_start = dict(zip(starts(hourly), counts(hourly, Metric.SEARCHES), strict=True))
    assert len(hourly.starts) == 24
    assert by_start["2025-10-05T01:00:00+10:30"] == 1
    assert by_start["2025-10-05T02:30:00+11:00"] == 1


@pytest.mark.parametrize("raw", [False, True], ids=["rollups", "events"])
@pytest.mark.parametrize(
    ("zone_name", "day", "hour_before", "hour_after_the_gap"),
    [
        # 02:45 +12:45 jumps to 03:45 +13:45: the 03 hour lasts 15 minutes, from 03:45.
        ("Pacific/Chatham", date(2025, 9, 28), "02:00:00+12:45", "03:45:00+13:45"),
        # Until 2011, 00:01 -03:30 jumped to 01:01 -02:30, off the quarter hours of the rollups:
        # the 01 hour starts at 01:01.
        ("America/St_Johns", date(2000, 4, 2), "00:00:00-03:30", "01:01:00-02:30"),
    ],
)
async def test_an_hour_begun_inside_a_gap_starts_where_the_gap_ends(
    runtime: Runtime,
    tenant: Tenant,
    zone_name: str,
    day: date,
    hour_before: str,
    hour_after_the_gap: str,
    raw: bool,
) -> None:
    before, after = (at(f"{day}T{wall}") for wall in (hour_before, hour_after_the_gap))
    await seed(runtime, tenant, [search(before), search(after + timedelta(minutes=5))])
    hourly = await ask(
        runtime,
        tenant,
        day,
        day,
        zone_name,
        Granularity.HOUR,
        filter=StatsFilter(query="q" if raw else None),
    )
    assert len(hourly.starts) == 24  # a day of 23 hours, each of its wall-clock hours a bucket
    assert after in hourly.starts
    assert hourly.starts[hourly.starts.index(after) - 1] == before
    by_start = dict(zip(hourly.starts, counts(hourly, Metric.SEARCHES), strict=True))
    assert (by_start[before], by_start[after]) == (1, 1)


async def test_weeks_start_on_monday_and_months_on_the_first(
    runtime: Runtime, tenant: Tenant
) -> None:
    await seed(
        runtime,
        tenant,
        [
            search(at("2025-01-05T23:00:00+00:00")),  # Sunday: week of Mon 2024-12-30
            search(at("2025-01-06T00:00:00+00:00")),  # Monday: a new week
            search(at("2025-02-28T12:00:00+00:00")),
            search(at("2025-03-01T00:00:00+00:00")),
        ],
    )
    weekly = await ask(
        runtime, tenant, date(2025, 1, 1), date(2025, 1, 12), granularity=Granularity.WEEK
    )
    assert starts(weekly) == ["2024-12-30T00:00:00+00:00", "2025-01-06T00:00:00+00:00"]
    assert counts(weekly, Metric.SEARCHES) == [1, 1]
    monthly = await ask(
        runtime, tenant, date(2025, 1, 1), date(2025, 4, 30), granularity=Granularity.MONTH
    )
    assert counts(monthly, Metric.SEARCHES) == [2, 1, 1, 0]
    assert starts(monthly)[1] == "2025-02-01T00:00:00+00:00"


async def test_gaps_are_zero_filled(runtime: Runtime, tenant: Tenant) -> None:
    await seed(runtime, tenant, [search(at("2025-06-03T12:00:00+00:00"))])
    report = await ask(runtime, tenant, date(2025, 6, 1), date(2025, 6, 5))
    assert counts(report, Metric.SEARCHES) == [0, 0, 1, 0, 0]
    assert report.series[Metric.SEARCHES].total == 5
    assert report.series[Metric.SEARCHES].total_count == 1


async def test_click_through_rate_and_average_position_by_hand(
    runtime: Runtime, tenant: Tenant
) -> None:
    day1, day2 = at("2025-07-01T10:00:00+00:00"), at("2025-07-02T10:00:00+00:00")
    searches = await seed(
        runtime,
        tenant,
        [
            search(day1, "red shoes"),
            search(day1, "blue"),
            search(day1, "nothing", results=0),
            search(day1, "red shoes"),
        ],
    )
    ids = [s.query_id for s in searches]
    await seed(
        runtime,
        tenant,
        [
            click(day1, ids[0], rank=0),  # position 1
            click(day1, ids[0], rank=2),  # position 3, same search: still one clicked search
            click(day2, ids[1], rank=4),  # position 5, a click the day after its search
            click(day2, "unknown-search", rank=9),  # not linked: no position, no CTR
        ],
    )
    report = await ask(runtime, tenant, date(2025, 7, 1), date(2025, 7, 3))
    ctr = report.rates[Rate.CLICK_THROUGH_RATE]
    # Day 1: 4 searches, 2 of them clicked (counted at the search's time).
    assert [p.value for p in ctr.points] == [0.5, None, None]
    assert ctr.overall == 0.5
    position = report.rates[Rate.AVERAGE_CLICK_POSITION]
    assert [p.value for p in position.points] == [2.0, 5.0, None]
    assert position.overall == pytest.approx(3.0)
    assert counts(report, Metric.CLICKS) == [2, 2, 0]
    assert counts(report, Metric.NO_RESULT_SEARCHES) == [1, 0, 0]


async def test_rates_are_null_without_searches(runtime: Runtime, tenant: Tenant) -> None:
    report = await ask(runtime, tenant, date(2025, 7, 1), date(2025, 7, 2))
    assert report.rates[Rate.CLICK_THROUGH_RATE].overall is None
    assert all(p.value is None for p in report.rates[Rate.AVERAGE_CLICK_POSITION].points)


async def test_the_largest_rank_has_its_position_from_raw_events_too(
    runtime: Runtime, tenant: Tenant
) -> None:
    # rank + 1 of the largest rank accepted (2**31 - 1) is past a 32-bit integer's range.
    day = at("2025-07-01T10:00:00+00:00")
    [found] = await seed(runtime, tenant, [search(day, "red")])
    await seed(runtime, tenant, [click(day, found.query_id, rank=2**31 - 1)])
    for where in (StatsFilter(), StatsFilter(query="red")):  # rollups, then raw events
        report = await ask(runtime, tenant, date(2025, 7, 1), date(2025, 7, 1), filter=where)
        assert report.rates[Rate.AVERAGE_CLICK_POSITION].overall == 2**31


async def test_sessions_users_feedback_and_breakdowns(runtime: Runtime, tenant: Tenant) -> None:
    t = at("2025-08-01T09:00:00+00:00")
    first = await seed(
        runtime,
        tenant,
        [
            search(t, "b", session_id="s1", user_id="u1"),
            search(t, "a", session_id="s1", user_id="u1"),
            search(t, "a", session_id="s2", user_id="u1"),
            search(t, "z", results=0, session_id="s3"),
            search(t, "y", results=0, session_id="s3"),
            search(t, "y", results=0, session_id="s3"),
        ],
    )
    await seed(
        runtime,
        tenant,
        [
            click(t, first[0].query_id, 0, document="doc-b"),
            click(t, first[1].query_id, 0, document="doc-a"),
            click(t, first[2].query_id, 1, document="doc-a"),
            EventDraft(kind=EventKind.FEEDBACK, occurred_at=t, document_id="doc-a", score=1),
            EventDraft(kind=EventKind.FEEDBACK, occurred_at=t, document_id="doc-a", score=-1),
            EventDraft(kind=EventKind.FEEDBACK, occurred_at=t, document_id="doc-b", score=1),
        ],
    )
    report = await ask(
        runtime,
        tenant,
        date(2025, 8, 1),
        date(2025, 8, 1),
        breakdowns=(
            (Breakdown.TOP_QUERIES, 2),
            (Breakdown.TOP_NO_RESULT_QUERIES, 5),
            (Breakdown.TOP_DOCUMENTS, 5),
        ),
    )
    assert counts(report, Metric.SESSIONS) == [3]
    assert counts(report, Metric.USERS) == [1]
    assert counts(report, Metric.FEEDBACK) == [3]
    assert counts(report, Metric.POSITIVE_FEEDBACK) == [2]
    assert counts(report, Metric.NEGATIVE_FEEDBACK) == [1]
    # Ties (a: 2, y: 2) break by the query text, so pages are stable.
    assert report.breakdowns[Breakdown.TOP_QUERIES] == [("a", 2), ("y", 2)]
    assert report.breakdowns[Breakdown.TOP_NO_RESULT_QUERIES] == [("y", 2), ("z", 1)]
    assert report.breakdowns[Breakdown.TOP_DOCUMENTS] == [("doc-a", 2), ("doc-b", 1)]


async def test_ties_in_top_lists_are_in_code_point_order_whatever_the_collation(
    settings: Settings, collated_database_url: str
) -> None:
    # A PostgreSQL database created in an English locale orders "a" before "B" and "e" before
    # "é" before "Z"; SQLite compares code points. The same question must get the same list.
    runtime = build_runtime(settings.model_copy(update={"database_url": collated_database_url}))
    await runtime.start()
    try:
        tenant = await make_tenant(runtime, "acme")
        t = at("2025-08-01T09:00:00+00:00")
        texts = ["b", "Z", "é", "a", "B", "e", "A"]
        found = await seed(runtime, tenant, [search(t, text, results=0) for text in texts])
        await seed(
            runtime,
            tenant,
            [click(t, s.query_id, 0, document=text) for s, text in zip(found, texts, strict=True)],
        )
        asked = tuple((breakdown, 5) for breakdown in Breakdown)
        report = await ask(runtime, tenant, date(2025, 8, 1), date(2025, 8, 1), breakdowns=asked)
    finally:
        await runtime.stop()
    expected = [(text, 1) for text in sorted(texts)[:5]]  # A B Z a b
    assert report.breakdowns[Breakdown.TOP_QUERIES] == expected
    assert report.breakdowns[Breakdown.TOP_NO_RESULT_QUERIES] == expected
    assert report.breakdowns[Breakdown.TOP_DOCUMENTS] == expected


async def test_sessions_and_users_are_distinct_across_engines(
    runtime: Runtime, tenant: Tenant
) -> None:
    second = await accounts.create_engine(database=runtime.database, account=tenant.account)
    engines = (tenant.hashid, second.hashid)
    visits = [  # (engine, day of August 2025, sessionId, userId)
        (0, 4, "s1", "u1"),
        (1, 4, "s1", "u1"),  # the same session and user on the other engine
        (0, 4, "s2", "u1"),
        (1, 4, "s3", "u2"),
        (1, 5, "s1", "u1"),  # the next day: counted in that day too
        (0, 5, None, "u3"),
        (1, 5, "s4", None),
    ]
    await seed(
        runtime,
        tenant,
        [
            EventDraft(
                kind=EventKind.VISIT,
                engine=engines[engine],
                occurred_at=datetime(2025, 8, day, 10, tzinfo=UTC),
                store="store",
                session_id=session,
                user_id=user,
            )
            for engine, day, session, user in visits
        ],
    )

    def distinct(asked: set[int], column: int) -> list[int]:
        return [
            len({v[column] for v in visits if v[0] in asked and v[1] == day and v[column]})
            for day in (4, 5)
        ]

    for asked in ({0, 1}, {0}, {1}):
        named = tuple(engines[i] for i in sorted(asked))
        report = await ask(runtime, tenant, date(2025, 8, 4), date(2025, 8, 5), engines=named)
        assert counts(report, Metric.SESSIONS) == distinct(asked, 2), asked
        assert counts(report, Metric.USERS) == distinct(asked, 3), asked
        # totalCount is the sum of the points, as for every count series.
        assert report.series[Metric.USERS].total_count == sum(distinct(asked, 3))
    every = await ask(runtime, tenant, date(2025, 8, 4), date(2025, 8, 5))
    assert counts(every, Metric.SESSIONS) == distinct({0, 1}, 2)
    # One series per engine (Doofinder's aggregate=false) counts that engine's ids alone.
    apart = await ask(
        runtime, tenant, date(2025, 8, 4), date(2025, 8, 5), engines=engines, per_engine=True
    )
    for index, hashid in enumerate(engines):
        series = apart.by_engine[hashid]
        assert [p.count for p in series[Metric.SESSIONS].points] == distinct({index}, 2)
        assert [p.count for p in series[Metric.USERS].points] == distinct({index}, 3)


async def test_bots_are_excluded_unless_asked(runtime: Runtime, tenant: Tenant) -> None:
    from app.services.record import Client

    crawler = Client(door="test", user_agent="Mozilla/5.0 (compatible; Googlebot/2.1)")
    t = at("2025-09-01T09:00:00+00:00")
    await seed(runtime, tenant, [search(t)], client=crawler)
    await seed(runtime, tenant, [search(t)])
    plain = await ask(runtime, tenant, date(2025, 9, 1), date(2025, 9, 1))
    with_bots = await ask(
        runtime, tenant, date(2025, 9, 1), date(2025, 9, 1), filter=StatsFilter(include_bots=True)
    )
    assert counts(plain, Metric.SEARCHES) == [1]
    assert counts(with_bots, Metric.SEARCHES) == [2]


async def test_other_accounts_events_are_never_counted(
    runtime: Runtime, tenant: Tenant, other_tenant: Tenant
) -> None:
    t = at("2025-09-02T09:00:00+00:00")
    await seed(runtime, other_tenant, [search(t), search(t)])
    await seed(runtime, tenant, [search(t)])
    report = await ask(runtime, tenant, date(2025, 9, 2), date(2025, 9, 2))
    assert counts(report, Metric.SEARCHES) == [1]


async def test_a_query_past_its_deadline_is_cancelled(
    runtime: Runtime, tenant: Tenant, backend: str
) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    drafts = [search(base + timedelta(minutes=7 * i), f"q{i % 500}") for i in range(1000)]
    for chunk in range(0, len(drafts), 1000):
        await seed(runtime, tenant, drafts[chunk : chunk + 1000])
    strict = runtime.settings.model_copy(update={"stats_timeout_seconds": 0.001})
    object.__setattr__(runtime, "settings", strict)
    slow = StatsQuery(
        period=period_of_days(date(2024, 1, 1), date(2024, 2, 28), parse_zone("Etc/UTC")),
        granularity=Granularity.HOUR,
        metrics=ALL_COUNTS,
        filter=StatsFilter(query="q1"),
        breakdowns=((Breakdown.TOP_QUERIES, 1000),),
    )
    principal = await principal_of(runtime, tenant)
    with pytest.raises(Timeout):
        await compute_stats(runtime=runtime, principal=principal, query=slow)
    # The connection is usable again right after.
    object.__setattr__(runtime, "settings", strict.model_copy(update={"stats_timeout_seconds": 10}))
    report = await ask(runtime, tenant, date(2024, 1, 1), date(2024, 1, 1))
    assert counts(report, Metric.SEARCHES) == [206]
