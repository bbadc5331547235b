"""The typed output of a stats question: count series, rate series and breakdowns."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from app.domain.stats import MAX_LIMIT, Breakdown, Metric, Rate
from app.services import stats as service
from graphql_schema.scalars import Long


@strawberry.enum(description="Bucket size; buckets start at local boundaries in the timezone.")
class Granularity(Enum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@strawberry.enum
class DeviceEnum(Enum):
    DESKTOP = "desktop"
    MOBILE = "mobile"


@strawberry.type
class CountPoint:
    start: datetime = strawberry.field(description="Bucket start, with the zone's offset.")
    timestamp: Long = strawberry.field(description="Bucket start in epoch milliseconds.")
    count: int


@strawberry.type
class CountSeries:
    points: list[CountPoint]
    total: int = strawberry.field(description="The number of points.")
    total_count: int = strawberry.field(description="The sum of the points' counts.")

    @classmethod
    def of(cls, series: service.CountSeries) -> CountSeries:
        return cls(
            points=[
                CountPoint(start=p.start, timestamp=Long(p.timestamp), count=p.count)
                for p in series.points
            ],
            total=series.total,
            total_count=series.total_count,
        )


@strawberry.type
class RatePoint:
    start: datetime
    value: float | None = strawberry.field(description="Null where undefined (nothing to divide).")


@strawberry.type
class RateSeries:
    points: list[RatePoint]
    overall: float | None

    @classmethod
    def of(cls, series: service.RateSeries) -> RateSeries:
        return cls(
            points=[RatePoint(start=p.start, value=p.value) for p in series.points],
            overall=series.overall,
        )


@strawberry.type
class QueryCount:
    query: str
    count: int


@strawberry.type
class DocumentCount:
    document_id: str
    count: int


@strawberry.type(description="Every metric of one question; ask for all of them in one trip.")
class Stats:
    report: strawberry.Private[service.StatsReport]

    def _count(self, metric: Metric) -> CountSeries:
        return CountSeries.of(self.report.series[metric])

    def _rate(self, rate: Rate) -> RateSeries:
        return RateSeries.of(self.report.rates[rate])

    def _top(self, breakdown: Breakdown, limit: int) -> list[tuple[str, int]]:
        # The report holds the longest list asked of the breakdown (StatsQuery.top_limits).
        return self.report.breakdowns.get(breakdown, [])[:limit]

    @strawberry.field
    def views(self) -> CountSeries:
        return self._count(Metric.VIEWS)

    @strawberry.field
    def searches(self) -> CountSeries:
        return self._count(Metric.SEARCHES)

    @strawberry.field
    def visits(self) -> CountSeries:
        return self._count(Metric.VISITS)

    @strawberry.field
    def clicks(self) -> CountSeries:
        return self._count(Metric.CLICKS)

    @strawberry.field
    def feedback(self) -> CountSeries:
        return self._count(Metric.FEEDBACK)

    @strawberry.field
    def positive_feedback(self) -> CountSeries:
        return self._count(Metric.POSITIVE_FEEDBACK)

    @strawberry.field
    def negative_feedback(self) -> CountSeries:
        return self._count(Metric.NEGATIVE_FEEDBACK)

    @strawberry.field(description="Distinct sessionIds per bucket, across the engines asked.")
    def sessions(self) -> CountSeries:
        return self._count(Metric.SESSIONS)

    @strawberry.field(description="Distinct userIds per bucket, across the engines asked.")
    def users(self) -> CountSeries:
        return self._count(Metric.USERS)

    @strawberry.field(description="Searches with a result count of 0.")
    def no_result_searches(self) -> CountSeries:
        return self._count(Metric.NO_RESULT_SEARCHES)

    @strawberry.field(description="Searches with at least one click / searches.")
    def click_through_rate(self) -> RateSeries:
        return self._rate(Rate.CLICK_THROUGH_RATE)

    @strawberry.field(description="Mean 1-based position (rank + 1) of clicks linked to a search.")
    def average_click_position(self) -> RateSeries:
        return self._rate(Rate.AVERAGE_CLICK_POSITION)

    @strawberry.field(
        description=f"Most frequent search texts (ties by text); limit 1 to {MAX_LIMIT}."
    )
    def top_queries(self, limit: int = 10) -> list[QueryCount]:
        return [QueryCount(query=q, count=n) for q, n in self._top(Breakdown.TOP_QUERIES, limit)]

    @strawberry.field(
        description=f"Most frequent texts of searches without results; limit 1 to {MAX_LIMIT}."
    )
    def top_no_result_queries(self, limit: int = 10) -> list[QueryCount]:
        top = self._top(Breakdown.TOP_NO_RESULT_QUERIES, limit)
        return [QueryCount(query=q, count=n) for q, n in top]

    @strawberry.field(description=f"Most clicked documents (ties by id); limit 1 to {MAX_LIMIT}.")
    def top_documents(self, limit: int = 10) -> list[DocumentCount]:
        top = self._top(Breakdown.TOP_DOCUMENTS, limit)
        return [DocumentCount(document_id=d, count=n) for d, n in top]


# GraphQL field name -> what the report must hold for it
METRIC_FIELDS: dict[str, Metric] = {
    "views": Metric.VIEWS,
    "searches": Metric.SEARCHES,
    "visits": Metric.VISITS,
    "clicks": Metric.CLICKS,
    "feedback": Metric.FEEDBACK,
    "positiveFeedback": Metric.POSITIVE_FEEDBACK,
    "negativeFeedback": Metric.NEGATIVE_FEEDBACK,
    "sessions": Metric.SESSIONS,
    "users": Metric.USERS,
    "noResultSearches": Metric.NO_RESULT_SEARCHES,
}
RATE_FIELDS: dict[str, Rate] = {
    "clickThroughRate": Rate.CLICK_THROUGH_RATE,
    "averageClickPosition": Rate.AVERAGE_CLICK_POSITION,
}
BREAKDOWN_FIELDS: dict[str, Breakdown] = {
    "topQueries": Breakdown.TOP_QUERIES,
    "topNoResultQueries": Breakdown.TOP_NO_RESULT_QUERIES,
    "topDocuments": Breakdown.TOP_DOCUMENTS,
}
