"""Event drafts built straight from the input values graphql-core has already validated.

Strawberry would build an input object for each event (and for each input nested in it),
converting every field by its annotation, and the resolver would then copy it into an
``EventDraft``. graphql-core has already checked and coerced the value against the schema, so
the ``from_input`` hook of each event input type builds the draft itself from those values,
through a plan of names made once per type. The schema's input types are unchanged; resolvers
receive drafts (``strawberry.argument(graphql_type=...)`` keeps the declared GraphQL type).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

from strawberry.schema.config import StrawberryConfig
from strawberry.types.arguments import InputContext

from app.domain.events import AppliedFilter, EventDraft, EventKind, PageInfo, ProductType, SortInfo

Convert = Callable[[Any], Any]
# (GraphQL field name, EventDraft attribute, conversion of a non-null value or None)
Plan = tuple[tuple[str, str, Convert | None], ...]


def _applied_filters(items: list[Mapping[str, Any]]) -> tuple[AppliedFilter, ...]:
    return tuple(
        AppliedFilter(item["filter"], item["operator"], item["value"], item.get("label"))
        for item in items
    )


def _sort(value: Mapping[str, Any]) -> SortInfo:
    return SortInfo(value["by"], value["order"])


def _page_info(value: Mapping[str, Any]) -> PageInfo:
    return PageInfo(
        value.get("size"), value.get("totalElements"), value.get("totalPages"), value.get("number")
    )


def _product_type(value: Any) -> ProductType:
    # graphql-core gives an enum value as Strawberry registered it: the member or its value.
    return ProductType(value.value if isinstance(value, Enum) else value)


# Fields whose draft attribute has another name, or whose value is nested.
_ATTRIBUTES: dict[str, tuple[str, Convert | None]] = {
    "applied_filters": ("applied_filters", _applied_filters),
    "sort": ("sort", _sort),
    "product_type": ("product_type", _product_type),
    "event": ("label", None),
}
# SearchInput's ``page`` is the pagination status; ClickInput's and FeedbackInput's a number.
_SEARCH_ATTRIBUTES = {**_ATTRIBUTES, "page": ("page_info", _page_info)}


Build = Callable[[Mapping[str, Any], StrawberryConfig], EventDraft]
_BUILDERS: dict[type, Build] = {}


def build_draft(cls: type, value: Mapping[str, Any], config: StrawberryConfig) -> EventDraft:
    """The draft of a value of an input type registered here, as graphql-core coerced it."""
    return _BUILDERS[cls](value, config)


def drafts_from_input(cls: type, kind: EventKind) -> None:
    """Let Strawberry turn a value of this input type into an ``EventDraft`` of ``kind``."""
    attributes = _SEARCH_ATTRIBUTES if kind is EventKind.SEARCH else _ATTRIBUTES
    plans: list[Plan] = []

    def build(value: Mapping[str, Any], config: StrawberryConfig) -> EventDraft:
        if not plans:
            plans.append(_plan(cls, config, attributes))
        fields = {}
        for name, attribute, convert in plans[0]:
            item = value.get(name)
            # An omitted field and a null leave the draft's default (None, or no filters).
            if item is not None:
                fields[attribute] = item if convert is None else convert(item)
        return EventDraft(kind=kind, **fields)

    _register(cls, build)


def drafts_from_one_of(cls: type, fields: Mapping[str, type]) -> None:
    """Let Strawberry turn a one-of input (one field per kind, each of a type registered by
    ``drafts_from_input``) into the draft of its one field."""
    builders = {name: _BUILDERS[kind_cls] for name, kind_cls in fields.items()}

    def build(value: Mapping[str, Any], config: StrawberryConfig) -> EventDraft:
        # graphql-core has checked that exactly one field is set, and not to null.
        ((name, event),) = value.items()
        return builders[name](event, config)

    _register(cls, build)


def _register(cls: type, build: Build) -> None:
    def from_input(_cls: type, value: Mapping[str, Any], context: InputContext) -> EventDraft:
        return build(value, context.config)

    _BUILDERS[cls] = build
    cls.__strawberry_definition__.from_input = from_input  # type: ignore[attr-defined]


def _plan(
    cls: type, config: StrawberryConfig, attributes: Mapping[str, tuple[str, Convert | None]]
) -> Plan:
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    return tuple(
        (
            config.name_converter.from_field(field),
            *attributes.get(field.python_name, (field.python_name, None)),
        )
        for field in definition.fields
    )
