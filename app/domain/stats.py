"""A stats question as one validated, immutable value, whichever door asked it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from app.domain.events import MAX_TEXT, Device, ProductType
from app.domain.periods import Granularity, Period
from app.errors import BadParams

MAX_LIMIT = 1000
MAX_FILTER_VALUES = 100


class Metric(StrEnum):
    """A count series; each maps to one rollup counter or to a distinct count of raw events."""

    VIEWS = "views"
    SEARCHES = "searches"
    VISITS = "visits"
    CLICKS = "clicks"
    FEEDBACK = "feedback"
    POSITIVE_FEEDBACK = "positive_feedback"
    NEGATIVE_FEEDBACK = "negative_feedback"
    NO_RESULT_SEARCHES = "no_result_searches"
    SESSIONS = "sessions"
    USERS = "users"


class Rate(StrEnum):
    """A ratio series: numerator counter over denominator counter, per bucket and overall."""

    CLICK_THROUGH_RATE = "click_through_rate"
    AVERAGE_CLICK_POSITION = "average_click_position"


class Breakdown(StrEnum):
    TOP_QUERIES = "top_queries"
    TOP_NO_RESULT_QUERIES = "top_no_result_queries"
    TOP_DOCUMENTS = "top_documents"


# Counters kept in the rollup table, by the name the write path gives them.
COUNTER_OF_METRIC: dict[Metric, str] = {
    Metric.VIEWS: "view",
    Metric.SEARCHES: "search",
    Metric.VISITS: "visit",
    Metric.CLICKS: "click",
    Metric.FEEDBACK: "feedback",
    Metric.POSITIVE_FEEDBACK: "feedback_positive",
    Metric.NEGATIVE_FEEDBACK: "feedback_negative",
    Metric.NO_RESULT_SEARCHES: "search_no_result",
}
DISTINCT_METRICS = frozenset({Metric.SESSIONS, Metric.USERS})
# (numerator counter, denominator counter)
COUNTERS_OF_RATE: dict[Rate, tuple[str, str]] = {
    Rate.CLICK_THROUGH_RATE: ("search_clicked", "search"),
    Rate.AVERAGE_CLICK_POSITION: ("linked_click_position", "linked_click"),
}


@dataclass(frozen=True, slots=True)
class IndexRef:
    """An index (Workplace: content source) by name, optionally within one engine."""

    name: str
    hashid: str | None = None


@dataclass(frozen=True, slots=True)
class StatsFilter:
    device: Device | None = None
    query: str | None = None
    document_id: str | None = None
    indices: tuple[IndexRef, ...] = ()
    product_types: tuple[ProductType, ...] = ()
    include_bots: bool = False
    # What the asking door calls the query and document filters, for its messages.
    names: tuple[str, str] = field(default=("filter query", "filter document"), compare=False)

    @property
    def needs_raw_events(self) -> bool:
        """Rollups are kept per device and robot flag only: other filters scan raw events."""
        return bool(self.query or self.document_id or self.indices or self.product_types)

    def problems(self) -> list[str]:
        found = []
        for name, value in zip(self.names, (self.query, self.document_id), strict=True):
            if value is not None and (not value or len(value) > MAX_TEXT):
                found.append(f"{name} must be 1 to {MAX_TEXT} characters")
        if len(self.indices) > MAX_FILTER_VALUES or len(self.product_types) > MAX_FILTER_VALUES:
            found.append(f"at most {MAX_FILTER_VALUES} values per filter")
        if any(not ref.name or len(ref.name) > 255 for ref in self.indices):
            found.append("index names must be 1 to 255 characters")
        texts = [self.query, self.document_id, *(ref.name for ref in self.indices)]
        if any(text and "\x00" in text for text in texts):
            found.append("filters must not contain NUL characters")  # no stored value has one
        return found


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """Engines (hashids; empty = every engine of the caller), period, bucketing and outputs."""

    period: Period
    granularity: Granularity = Granularity.DAY
    engines: tuple[str, ...] = ()
    filter: StatsFilter = field(default_factory=StatsFilter)
    metrics: frozenset[Metric] = frozenset()
    rates: frozenset[Rate] = frozenset()
    # (breakdown, limit) for every limit asked: a GraphQL client may ask one several times
    breakdowns: tuple[tuple[Breakdown, int], ...] = ()
    per_engine: bool = False

    def __post_init__(self) -> None:
        problems = self.filter.problems()
        problems += [
            f"limit must be between 1 and {MAX_LIMIT}"
            for _, limit in self.breakdowns
            if not 1 <= limit <= MAX_LIMIT
        ]
        if len(self.engines) > MAX_FILTER_VALUES:
            problems.append(f"at most {MAX_FILTER_VALUES} engines per query")
        if problems:
            raise BadParams.of(problems)

    @property
    def top_limits(self) -> dict[Breakdown, int]:
        """The longest list asked of each breakdown; shorter ones are its first rows."""
        limits: dict[Breakdown, int] = {}
        for breakdown, limit in self.breakdowns:
            limits[breakdown] = max(limit, limits.get(breakdown, 0))
        return limits

    @property
    def counters(self) -> frozenset[str]:
        """The rollup counters this query reads."""
        names = {COUNTER_OF_METRIC[m] for m in self.metrics if m in COUNTER_OF_METRIC}
        for rate in self.rates:
            names.update(COUNTERS_OF_RATE[rate])
        return frozenset(names)
