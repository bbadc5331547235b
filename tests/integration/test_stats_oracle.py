"""Property: every number of a stats answer is what docs/stats.md promises, counted by brute force.

Random events of every kind (devices, robots, sessions, users, clicks and feedback linked to
searches, product types, indices) are recorded, then random questions (zones with DST and odd
offsets, dates and date-times off the quarter hour, every granularity, filters, engine subsets)
are answered by the service and, from the events kept here, in Python.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.domain.bounds import Bound, period_between
from app.domain.events import Device, EventDraft, EventKind, ProductType
from app.domain.periods import Granularity, Period, parse_zone
from app.domain.stats import Breakdown, IndexRef, Metric, Rate, StatsFilter, StatsQuery
from app.domain.user_agents import ClientTraits
from app.services import accounts
from app.services.record import Client
from app.services.runtime import Runtime
from app.services.stats import StatsReport, compute_stats
from tests.conftest import Tenant
from tests.integration.stats_seed import principal_of, seed

ZONES = ["Etc/UTC", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham"]
TRAITS = [
    ClientTraits(Device.DESKTOP, False),
    ClientTraits(Device.MOBILE, False),
    ClientTraits(Device.DESKTOP, True),
    ClientTraits(Device.UNKNOWN, False),
]
QUERIES = ["a", "B", "b", "é", "ab"]
DOCUMENTS = ["d1", "D2", "x"]
INDICES = ["i1", "i2"]
# Around the spring shifts of New York (03-09), Lord Howe and Chatham (04-06).
START = datetime(2025, 3, 1, tzinfo=UTC)
DAYS = 45
KIND_METRIC = {
    "view": Metric.VIEWS,
    "search": Metric.SEARCHES,
    "visit": Metric.VISITS,
    "click": Metric.CLICKS,
    "feedback": Metric.FEEDBACK,
}


@dataclass
class Stored:
    """An event as the docs describe it: a linked click or feedback carries its search's text."""

    engine: int
    kind: str
    at: datetime
    traits: ClientTraits
    session: str | None
    user: str | None
    query: str | None = None
    result_count: int | None = None
    search: Stored | None = None
    clicked: bool = False
    document: str | None = None
    index: str | None = None
    product_type: str | None = None
    rank: int | None = None
    score: int | None = None


def kept(event: Stored, where: StatsFilter, engines: set[int]) -> bool:
    return (
        event.engine in engines
        and (where.include_bots or not event.traits.is_bot)
        and (where.device is None or event.traits.device is where.device)
        and (where.query is None or event.query == where.query)
        and (where.document_id is None or event.document == where.document_id)
        and (not where.indices or event.index in {ref.name for ref in where.indices})
        and (not where.product_types or event.product_type in where.product_types)
    )


async def record_random_events(
    runtime: Runtime, tenant: Tenant, rng: random.Random, hashids: dict[str, int]
) -> list[Stored]:
    stored: list[Stored] = []
    searches: list[tuple[Stored, str, str]] = []  # (search, engine hashid, queryId)
    for _ in range(8):
        batches: dict[int, list[tuple[EventDraft, Stored]]] = {}
        for _ in range(30):
            client = rng.randrange(len(TRAITS))
            hashid = rng.choice(list(hashids))
            seconds = rng.randrange(DAYS * 86400)
            at = START + timedelta(seconds=seconds - seconds % 900 * rng.randrange(2))
            event = Stored(
                hashids[hashid],
                rng.choice(["search", "search", "click", "click", "feedback", "view", "visit"]),
                at,
                TRAITS[client],
                rng.choice([None, "s1", "s2", "s3"]),
                rng.choice([None, "u1", "u2"]),
            )
            common = {"occurred_at": at, "engine": hashid, "session_id": event.session}
            draft = _draft(event, rng, [s for s in searches if s[1] == hashid], common)
            batches.setdefault(client, []).append((draft, event))
        for client, pairs in batches.items():
            traits = Client(door="test", traits=TRAITS[client])
            results = await seed(runtime, tenant, [draft for draft, _ in pairs], traits)
            for (draft, event), result in zip(pairs, results, strict=True):
                stored.append(event)
                if event.kind == "search" and result.query_id and draft.engine:
                    searches.append((event, draft.engine, result.query_id))
    return stored


def _draft(
    event: Stored,
    rng: random.Random,
    searches: list[tuple[Stored, str, str]],
    common: dict[str, Any],
) -> EventDraft:
    common = {**common, "user_id": event.user}
    if event.kind == "search":
        event.query, event.result_count = rng.choice(QUERIES), rng.choice([0, 3])
        return EventDraft(
            kind=EventKind.SEARCH,
            query=event.query,
            result_count=event.result_count,
            **common,
        )
    if event.kind == "view":
        event.document = "0b6a1f1e-1111-4222-8333-944445555666"
        return EventDraft(
            kind=EventKind.VIEW, target_id=event.document, target_type="item", **common
        )
    if event.kind == "visit":
        return EventDraft(kind=EventKind.VISIT, store="s", **common)
    linked = rng.choice(searches) if searches and rng.random() < 0.8 else None
    event.document, event.index = rng.choice(DOCUMENTS), rng.choice([None, *INDICES])
    if linked:
        event.search = linked[0]
        event.query, event.result_count = linked[0].query, linked[0].result_count
    about: dict[str, Any] = {
        "document_id": event.document,
        "content_source_id": event.index,
        "query_id": linked[2] if linked else None,
    }
    if event.kind == "feedback":
        event.score = rng.choice([1, -1])
        return EventDraft(kind=EventKind.FEEDBACK, score=event.score, **about, **common)
    event.rank = rng.randrange(5)
    product = rng.choice([None, ProductType.BANNER, ProductType.SEARCH])
    event.product_type = (product or ProductType.SEARCH).value
    if linked:
        linked[0].clicked = True
    return EventDraft(
        kind=EventKind.CLICK, rank=event.rank, product_type=product, **about, **common
    )


def random_period(rng: random.Random, granularity: Granularity) -> Period:
    zone = parse_zone(rng.choice(ZONES))
    first = (START + timedelta(days=rng.randrange(-2, DAYS))).date()
    last = first + timedelta(days=rng.randrange(3 if granularity is Granularity.HOUR else 40))

    def instant(day: date) -> datetime:
        wall = datetime(day.year, day.month, day.day, rng.randrange(24), tzinfo=zone)
        off_grid = rng.choice([timedelta(0), timedelta(minutes=7), timedelta(microseconds=1)])
        return wall.astimezone(UTC) + timedelta(minutes=rng.choice([0, 15, 45])) + off_grid

    bounds: tuple[Bound, Bound] = (first, last)
    if rng.random() < 0.5:
        bounds = (instant(first), instant(last + timedelta(days=1)))
    return period_between(*bounds, zone)


def random_filter(rng: random.Random) -> StatsFilter:
    choices: list[Callable[[], StatsFilter]] = [
        StatsFilter,
        lambda: StatsFilter(device=rng.choice([Device.DESKTOP, Device.MOBILE])),
        lambda: StatsFilter(include_bots=True),
        lambda: StatsFilter(query=rng.choice(QUERIES)),
        lambda: StatsFilter(document_id=rng.choice(DOCUMENTS)),
        lambda: StatsFilter(indices=(IndexRef(rng.choice(INDICES)),)),
        lambda: StatsFilter(product_types=(rng.choice(list(ProductType)),)),
        lambda: StatsFilter(device=Device.DESKTOP, include_bots=True, query=rng.choice(QUERIES)),
    ]
    return rng.choice(choices)()


def expected_series(events: list[Stored], starts: list[datetime]) -> dict[Metric, list[int]]:
    series = {metric: [0] * len(starts) for metric in Metric}
    distinct: dict[Metric, list[set[str]]] = {
        Metric.SESSIONS: [set() for _ in starts],
        Metric.USERS: [set() for _ in starts],
    }
    for event in events:
        bucket = bisect.bisect_right(starts, event.at) - 1
        series[KIND_METRIC[event.kind]][bucket] += 1
        series[Metric.POSITIVE_FEEDBACK][bucket] += event.score == 1
        series[Metric.NEGATIVE_FEEDBACK][bucket] += event.score == -1
        series[Metric.NO_RESULT_SEARCHES][bucket] += (
            event.kind == "search" and not event.result_count
        )
        for metric, value in ((Metric.SESSIONS, event.session), (Metric.USERS, event.user)):
            if value is not None:
                distinct[metric][bucket].add(value)
    for metric, sets in distinct.items():
        series[metric] = [len(ids) for ids in sets]
    return series


def expected_rates(
    events: list[Stored], starts: list[datetime]
) -> dict[Rate, tuple[list[float | None], float | None]]:
    sums = {rate: ([0] * len(starts), [0] * len(starts)) for rate in Rate}
    for event in events:
        bucket = bisect.bisect_right(starts, event.at) - 1
        if event.kind == "search":
            sums[Rate.CLICK_THROUGH_RATE][0][bucket] += event.clicked
            sums[Rate.CLICK_THROUGH_RATE][1][bucket] += 1
        if event.kind == "click" and event.search is not None and event.rank is not None:
            sums[Rate.AVERAGE_CLICK_POSITION][0][bucket] += event.rank + 1
            sums[Rate.AVERAGE_CLICK_POSITION][1][bucket] += 1
    return {
        rate: (
            [n / d if d else None for n, d in zip(top, bottom, strict=True)],
            sum(top) / sum(bottom) if sum(bottom) else None,
        )
        for rate, (top, bottom) in sums.items()
    }


def expected_tops(events: list[Stored], limit: int) -> dict[Breakdown, list[tuple[str, int]]]:
    def top(values: list[str | None]) -> list[tuple[str, int]]:
        counted = Counter(value for value in values if value is not None)
        return sorted(counted.items(), key=lambda item: (-item[1], item[0]))[:limit]

    searches = [e for e in events if e.kind == "search"]
    return {
        Breakdown.TOP_QUERIES: top([e.query for e in searches]),
        Breakdown.TOP_NO_RESULT_QUERIES: top([e.query for e in searches if not e.result_count]),
        Breakdown.TOP_DOCUMENTS: top([e.document for e in events if e.kind == "click"]),
    }


def answered(report: StatsReport) -> tuple[object, ...]:
    return (
        {m: [p.count for p in s.points] for m, s in report.series.items()},
        {r: ([p.value for p in s.points], s.overall) for r, s in report.rates.items()},
        report.breakdowns,
    )


async def test_every_number_is_what_the_docs_promise(runtime: Runtime, tenant: Tenant) -> None:
    rng = random.Random(20251206)
    other = await accounts.create_engine(database=runtime.database, account=tenant.account)
    principal = await principal_of(runtime, tenant)
    hashids = {e.hashid: e.id for e in await runtime.engines.engines_for(principal, None)}
    events = await record_random_events(runtime, tenant, rng, hashids)
    for _ in range(60):
        granularity = rng.choice(list(Granularity))
        period = random_period(rng, granularity)
        where = random_filter(rng)
        named = rng.choice([(), (tenant.hashid,), (other.hashid,)])
        limit = rng.choice([1, 2, 10])
        report = await compute_stats(
            runtime=runtime,
            principal=principal,
            query=StatsQuery(
                period=period,
                granularity=granularity,
                engines=named,
                filter=where,
                metrics=frozenset(Metric),
                rates=frozenset(Rate),
                breakdowns=tuple((breakdown, limit) for breakdown in Breakdown),
            ),
        )
        engines = {hashids[h] for h in named} if named else set(hashids.values())
        inside = [
            e for e in events if period.start <= e.at < period.end and kept(e, where, engines)
        ]
        starts = [start.astimezone(UTC) for start in report.starts]
        expected = (
            expected_series(inside, starts),
            expected_rates(inside, starts),
            expected_tops(inside, limit),
        )
        assert answered(report) == expected, (period, granularity, where, named)
