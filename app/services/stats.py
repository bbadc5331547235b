"""Stats: resolve engines, bucket the period, read counts, shape series, rates and tops."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth.principal import Principal
from app.domain.periods import Period, bucket_starts, rollups_answer
from app.domain.stats import (
    COUNTER_OF_METRIC,
    COUNTERS_OF_RATE,
    Breakdown,
    Metric,
    Rate,
    StatsQuery,
)
from app.services.runtime import Runtime
from app.storage import stats_sql
from app.storage.deadline import reading
from app.storage.directory import EngineRecord
from app.storage.outages import unless_stalled
from app.storage.types import to_micros

DISTINCT_COLUMN = {Metric.SESSIONS: "session_id", Metric.USERS: "user_id"}


@dataclass(frozen=True, slots=True)
class CountPoint:
    start: datetime
    count: int
    timestamp: int  # epoch milliseconds of the bucket start


@dataclass(frozen=True, slots=True)
class CountSeries:
    points: list[CountPoint]

    @property
    def total(self) -> int:
        """The number of points, as Doofinder's ``total``."""
        return len(self.points)

    @property
    def total_count(self) -> int:
        """The sum of the points' counts, as Doofinder's ``total_count``."""
        return sum(p.count for p in self.points)


@dataclass(frozen=True, slots=True)
class RatePoint:
    start: datetime
    value: float | None


@dataclass(frozen=True, slots=True)
class RateSeries:
    points: list[RatePoint]
    overall: float | None


@dataclass(frozen=True, slots=True, weakref_slot=True)  # live answers live as long as it
class StatsReport:
    starts: list[datetime]
    series: dict[Metric, CountSeries] = field(default_factory=dict)
    rates: dict[Rate, RateSeries] = field(default_factory=dict)
    breakdowns: dict[Breakdown, list[tuple[str, int]]] = field(default_factory=dict)
    by_engine: dict[str, dict[Metric, CountSeries]] = field(default_factory=dict)


# (engine id, bucket index, counter) -> amount
Counts = dict[tuple[int, int, str], int]
# distinct metric -> its count in each bucket
Distinct = dict[Metric, list[int]]


async def compute_stats(
    *, runtime: Runtime, principal: Principal, query: StatsQuery
) -> StatsReport:
    """Answer one stats question for the caller's engines, within the stats deadline; 503 when
    the database does not answer at all (``Settings.stats_wait_seconds``)."""
    question = _compute_stats(runtime=runtime, principal=principal, query=query)
    return await unless_stalled(question, runtime.settings.stats_wait_seconds)


async def _compute_stats(
    *, runtime: Runtime, principal: Principal, query: StatsQuery
) -> StatsReport:
    starts = bucket_starts(query.period, query.granularity)
    boundaries = _boundaries(starts, query.period)
    indices = await _resolve_indices(runtime, principal, query)
    async with reading(runtime.database, runtime.settings.stats_timeout_seconds) as conn:
        # On the read's own connection: one round trip, not another connection and transaction.
        engines = await runtime.engines.engines_for(principal, query.engines or None, conn=conn)
        scope = stats_sql.Scope(
            engine_ids=tuple(e.id for e in engines),
            filter=query.filter,
            indices=indices,
            start=query.period.start,
            end=query.period.end,
        )
        counts = await _counters(conn, scope, boundaries, query)
        distinct = await _distinct(conn, scope, boundaries, query.metrics)
        distinct_by_engine: dict[int, Distinct] = {}
        if query.per_engine:
            for engine in engines:
                alone = replace(scope, engine_ids=(engine.id,))
                distinct_by_engine[engine.id] = await _distinct(
                    conn, alone, boundaries, query.metrics
                )
        tops = {
            breakdown: await stats_sql.top_values(conn, scope, breakdown, limit)
            for breakdown, limit in query.top_limits.items()
        }
    local = [s.astimezone(query.period.zone) for s in starts]
    stamps = [to_micros(s) // 1000 for s in starts]
    report = StatsReport(starts=local, breakdowns=tops)
    report.series.update(_series(query.metrics, local, stamps, counts, distinct, scope.engine_ids))
    report.rates.update({rate: _rate(rate, local, counts) for rate in query.rates})
    if query.per_engine:
        for engine in engines:
            report.by_engine[engine.hashid] = _series(
                query.metrics, local, stamps, counts, distinct_by_engine[engine.id], (engine.id,)
            )
    return report


async def _resolve_indices(
    runtime: Runtime, principal: Principal, query: StatsQuery
) -> tuple[tuple[str, int | None], ...]:
    resolved: list[tuple[str, int | None]] = []
    for ref in query.filter.indices:
        engine: EngineRecord | None = None
        if ref.hashid is not None:
            engine = await runtime.engines.engine_for(principal, ref.hashid)
        resolved.append((ref.name, engine.id if engine else None))
    return tuple(resolved)


def _boundaries(starts: list[datetime], period: Period) -> list[tuple[datetime, datetime]]:
    """Each bucket's [lo, hi), clipped to the period."""
    ends = [*starts[1:], period.end]
    return [(max(s, period.start), min(e, period.end)) for s, e in zip(starts, ends, strict=True)]


async def _counters(
    conn: AsyncConnection,
    scope: stats_sql.Scope,
    boundaries: list[tuple[datetime, datetime]],
    query: StatsQuery,
) -> Counts:
    counters = sorted(query.counters)
    if not counters:
        return {}
    use_rollups = not query.filter.needs_raw_events and rollups_answer(
        query.period, query.granularity
    )
    read = stats_sql.counters_from_rollups if use_rollups else stats_sql.counters_from_events
    rows = await read(conn, scope, boundaries, counters)
    counts: Counts = defaultdict(int)
    for engine_id, index, counter, amount in rows:
        counts[(engine_id, index, counter)] += amount
    return counts


async def _distinct(
    conn: AsyncConnection,
    scope: stats_sql.Scope,
    boundaries: list[tuple[datetime, datetime]],
    metrics: frozenset[Metric],
) -> Distinct:
    """Distinct sessions and users of each bucket, counted once across the scope's engines.

    An id seen on two engines is one session or user: per-engine counts cannot be added up.
    """
    distinct: Distinct = {}
    for metric, column in DISTINCT_COLUMN.items():
        if metric in metrics:
            totals = [0] * len(boundaries)
            for index, amount in await stats_sql.distinct_counts(conn, scope, boundaries, column):
                totals[index] = amount
            distinct[metric] = totals
    return distinct


def _series(
    metrics: Iterable[Metric],
    starts: list[datetime],
    stamps: list[int],
    counts: Counts,
    distinct: Distinct,
    engine_ids: tuple[int, ...],
) -> dict[Metric, CountSeries]:
    """Count series over ``engine_ids``, whose distinct counts ``distinct`` already holds."""
    series: dict[Metric, CountSeries] = {}
    for metric in metrics:
        if metric in COUNTER_OF_METRIC:
            counter = COUNTER_OF_METRIC[metric]
            totals = [0] * len(starts)
            for engine_id in engine_ids:
                for index in range(len(starts)):
                    totals[index] += counts.get((engine_id, index, counter), 0)
        else:
            totals = distinct[metric]
        series[metric] = CountSeries(
            [CountPoint(*point) for point in zip(starts, totals, stamps, strict=True)]
        )
    return series


def _rate(rate: Rate, starts: list[datetime], counts: Counts) -> RateSeries:
    numerator_name, denominator_name = COUNTERS_OF_RATE[rate]
    numerators = [0] * len(starts)
    denominators = [0] * len(starts)
    for (_engine, index, counter), amount in counts.items():
        if counter == numerator_name:
            numerators[index] += amount
        elif counter == denominator_name:
            denominators[index] += amount
    points = [
        RatePoint(start, _ratio(n, d))
        for start, n, d in zip(starts, numerators, denominators, strict=True)
    ]
    return RateSeries(points, _ratio(sum(numerators), sum(denominators)))


def _ratio(numerator: int, denominator: int) -> float | None:
    """Undefined (None) without a denominator, never a division by zero."""
    return numerator / denominator if denominator else None
