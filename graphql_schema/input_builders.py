"""Fast construction of input objects from the values GraphQL has already validated.

Strawberry resolves each field's annotation again for every input value it converts, which costs
about 100 µs per event of a ``recordEvents`` batch. graphql-core has already checked and coerced
the value against the schema, so all that is left is mapping names and nesting: these builders
plan that once per type (through Strawberry's ``from_input`` hook) and then only copy values.
The schema's types are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from strawberry.types.arguments import InputContext
from strawberry.types.base import (
    StrawberryList,
    StrawberryOptional,
    has_object_definition,
)
from strawberry.types.enum import StrawberryEnumDefinition

Convert = Callable[[Any], Any]
_plans: dict[type, list[tuple[str, str, Convert | None]]] = {}


def build_quickly(*classes: type) -> None:
    """Let Strawberry build these input classes through their precomputed plans."""
    for cls in classes:
        cls.__strawberry_definition__.from_input = _from_input  # type: ignore[attr-defined]


def _from_input(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
    plan = _plans.get(cls)
    if plan is None:
        plan = _plans[cls] = _plan(cls, context)
    kwargs = {}
    for graphql_name, python_name, convert in plan:
        if graphql_name in value:
            item = value[graphql_name]
            kwargs[python_name] = item if convert is None or item is None else convert(item)
    return cls(**kwargs)


def _plan(cls: type, context: InputContext) -> list[tuple[str, str, Convert | None]]:
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    naming = context.config.name_converter
    return [
        (
            naming.from_field(field),
            field.python_name,
            _converter(field.resolve_type(type_definition=definition), context),
        )
        for field in definition.fields
    ]


def _converter(type_: Any, context: InputContext) -> Convert | None:
    """How to turn a validated value of this type into its Python value; None: as it is."""
    if isinstance(type_, StrawberryOptional):
        return _converter(type_.of_type, context)
    if isinstance(type_, StrawberryList):
        inner = _converter(type_.of_type, context)
        if inner is None:
            return list
        return lambda items: [None if x is None else inner(x) for x in items]
    if has_object_definition(type_):
        nested: type = type_
        return lambda item: _from_input(nested, item, context)
    definition = type_ if isinstance(type_, StrawberryEnumDefinition) else None
    definition = definition or getattr(type_, "__strawberry_definition__", None)
    if isinstance(definition, StrawberryEnumDefinition):
        wrapped: Any = definition.wrapped_cls
        return lambda item: item if isinstance(item, wrapped) else wrapped(item)
    return None
