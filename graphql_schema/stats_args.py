"""The arguments of ``stats`` (and ``liveStats``), translated into one StatsQuery value."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField

from app.domain.bounds import parse_iso_bound, period_between
from app.domain.events import Device, ProductType
from app.domain.periods import Granularity as DomainGranularity
from app.domain.periods import parse_zone
from app.domain.stats import IndexRef, StatsFilter, StatsQuery
from graphql_schema.inputs import ProductTypeEnum
from graphql_schema.stats_types import (
    BREAKDOWN_FIELDS,
    METRIC_FIELDS,
    RATE_FIELDS,
    DeviceEnum,
    Granularity,
)

DEFAULT_LIMIT = 10


@strawberry.input(description="Narrow a stats question; every filter is optional.")
class StatsFilterInput:
    device: DeviceEnum | None = None
    query: str | None = strawberry.field(
        default=None, description="Searches with this query, and clicks/feedback linked to them."
    )
    document: str | None = strawberry.field(
        default=None, description="Events about this document (documentId, targetId or dfid)."
    )
    index: list[str] | None = strawberry.field(
        default=None, description="Clicks and feedback from these indices / content sources."
    )
    product_type: list[ProductTypeEnum] | None = None
    include_bots: bool = strawberry.field(
        default=False, description="Count events from robots too (excluded by default)."
    )

    def to_domain(self) -> StatsFilter:
        return StatsFilter(
            device=Device(self.device.value) if self.device else None,
            query=self.query,
            document_id=self.document,
            indices=tuple(IndexRef(name) for name in self.index or ()),
            product_types=tuple(ProductType(p.value) for p in self.product_type or ()),
            include_bots=self.include_bots,
        )


def stats_query(
    *,
    start: str,
    end: str,
    timezone: str,
    granularity: Granularity,
    engines: list[strawberry.ID] | None,
    filter: StatsFilterInput | None,
    selections: Iterable[Any],
) -> StatsQuery:
    zone = parse_zone(timezone)
    period = period_between(
        parse_iso_bound("from", start, zone), parse_iso_bound("to", end, zone), zone
    )
    wanted = _wanted_fields(selections)
    return StatsQuery(
        period=period,
        granularity=DomainGranularity(granularity.value),
        engines=tuple(str(e) for e in engines or ()),
        filter=filter.to_domain() if filter else StatsFilter(),
        metrics=frozenset(METRIC_FIELDS[n] for n in wanted if n in METRIC_FIELDS),
        rates=frozenset(RATE_FIELDS[n] for n in wanted if n in RATE_FIELDS),
        breakdowns=tuple(
            (BREAKDOWN_FIELDS[n], limit) for n, limit in wanted.items() if n in BREAKDOWN_FIELDS
        ),
    )


def _wanted_fields(selections: Iterable[Any]) -> dict[str, int]:
    """Field names selected on Stats (through fragments too), with the largest limit asked."""
    wanted: dict[str, int] = {}
    for selection in selections:
        if isinstance(selection, SelectedField):
            limit = selection.arguments.get("limit", DEFAULT_LIMIT)
            limit = limit if isinstance(limit, int) else DEFAULT_LIMIT
            wanted[selection.name] = max(wanted.get(selection.name, 0), limit)
        elif isinstance(selection, FragmentSpread | InlineFragment):
            for name, limit in _wanted_fields(selection.selections).items():
                wanted[name] = max(wanted.get(name, 0), limit)
    return wanted
