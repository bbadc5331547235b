"""The arguments of ``stats`` (and ``liveStats``), translated into one StatsQuery value."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionNode,
    SelectionSetNode,
    VariableValues,
    get_argument_values,
    get_named_type,
)

from app.domain.bounds import parse_iso_bound, period_between
from app.domain.events import Device, ProductType
from app.domain.periods import Granularity as DomainGranularity
from app.domain.periods import parse_zone
from app.domain.selection import selected
from app.domain.stats import IndexRef, StatsFilter, StatsQuery
from app.domain.tenancy import named_engines
from graphql_schema.inputs import ProductTypeEnum
from graphql_schema.stats_types import (
    BREAKDOWN_FIELDS,
    METRIC_FIELDS,
    RATE_FIELDS,
    DeviceEnum,
    Granularity,
)


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
        indices = selected(self.index, field="index", noun="index") or ()
        product_types = selected(self.product_type, field="productType", noun="product type")
        return StatsFilter(
            device=Device(self.device.value) if self.device else None,
            query=self.query,
            document_id=self.document,
            indices=tuple(IndexRef(name) for name in indices),
            product_types=tuple(ProductType(p.value) for p in product_types or ()),
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
    info: strawberry.Info[Any, Any],
) -> StatsQuery:
    """The question a ``stats`` or ``liveStats`` field asks; ``info`` tells what it selects."""
    zone = parse_zone(timezone)
    period = period_between(
        parse_iso_bound("from", start, zone), parse_iso_bound("to", end, zone), zone
    )
    selected = _selected_fields(info)
    names = {name for name, _ in selected}
    return StatsQuery(
        period=period,
        granularity=DomainGranularity(granularity.value),
        engines=named_engines(engines),
        filter=filter.to_domain() if filter else StatsFilter(),
        metrics=frozenset(METRIC_FIELDS[n] for n in names if n in METRIC_FIELDS),
        rates=frozenset(RATE_FIELDS[n] for n in names if n in RATE_FIELDS),
        # Every limit asked (aliases may ask several), so that each one is checked.
        breakdowns=tuple(
            sorted(
                {
                    (BREAKDOWN_FIELDS[n], args["limit"])
                    for n, args in selected
                    if n in BREAKDOWN_FIELDS
                }
            )
        ),
    )


def _selected_fields(info: strawberry.Info[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The fields selected on Stats (through fragments too), each with its arguments.

    Arguments are coerced here as GraphQL coerces them for the fields' own resolvers, literals
    and variables alike: Strawberry's ``selected_fields`` hands a literal over as written (the
    string "12" for ``limit: 12``). A field, fragment or spread that ``@skip`` or ``@include``
    leaves out is not selected, as GraphQL's execution leaves it out: its metric is not computed
    and its arguments are not checked.
    """
    raw = info._raw_info
    stats_type = get_named_type(raw.return_type)
    assert isinstance(stats_type, GraphQLObjectType)
    # Only the coerced values are read (where they came from matters to no argument of Stats).
    variables = VariableValues(sources={}, coerced=info.variable_values)
    selected: list[tuple[str, dict[str, Any]]] = []
    pending: list[SelectionSetNode | None] = [node.selection_set for node in raw.field_nodes]
    while pending:
        selection_set = pending.pop()
        for node in selection_set.selections if selection_set else ():
            if not _included(node, variables):
                continue
            if isinstance(node, FieldNode):
                field = stats_type.fields.get(node.name.value)
                if field is not None:  # not __typename
                    arguments = get_argument_values(field, node, variables)
                    selected.append((node.name.value, arguments))
            elif isinstance(node, InlineFragmentNode):
                pending.append(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                pending.append(raw.fragments[node.name.value].selection_set)
    return selected


def _included(node: SelectionNode, variables: VariableValues) -> bool:
    """False where ``@skip(if: true)`` or ``@include(if: false)`` leaves the node out."""
    for directive in node.directives or ():
        if directive.name.value == GraphQLSkipDirective.name:
            leaves_out = get_argument_values(GraphQLSkipDirective, directive, variables)["if"]
        elif directive.name.value == GraphQLIncludeDirective.name:
            leaves_out = not get_argument_values(GraphQLIncludeDirective, directive, variables)[
                "if"
            ]
        else:
            continue
        if leaves_out:
            return False
    return True
