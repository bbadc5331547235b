"""The event mutations read their inputs as graphql-core coerced them, without Strawberry's
conversion or resolver wrapper.

Strawberry converts an argument before it calls a resolver: for a list, a type dispatch, an input
context and a path for every item (about 3.5 µs an event of a ``recordEvents`` batch of up to
1,000), although each event type's hook builds its own draft (graphql_schema/drafts.py); and it
wraps every resolver in its own, which reads the field's arguments and builds an ``Info`` per
call (with the conversion, about a twelfth of a single-event mutation's CPU). So each event
mutation's GraphQL resolver is replaced by one that builds the drafts from the coerced values
itself and then records them as the mutation's own resolver does. The schema is Strawberry's, as
declared in graphql_schema/mutations.py: same fields, arguments, types and SDL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import strawberry
from graphql import GraphQLResolveInfo
from strawberry.schema.config import StrawberryConfig

from graphql_schema import inputs
from graphql_schema.context import Context
from graphql_schema.drafts import build_draft
from graphql_schema.mutations import record
from graphql_schema.types import RecordResult

# Each single-event mutation, by its GraphQL name, and the input type of its ``input``.
SINGLE_EVENT_MUTATIONS: dict[str, type] = {
    "recordView": inputs.ViewInput,
    "recordSearch": inputs.SearchInput,
    "recordVisit": inputs.VisitInput,
    "recordClick": inputs.ClickInput,
    "recordFeedback": inputs.FeedbackInput,
}

Resolver = Callable[
    [object, GraphQLResolveInfo[Context], Mapping[str, Any]], Awaitable[RecordResult]
]


def read_inputs_directly(schema: strawberry.Schema) -> None:
    """Resolve this schema's event mutations from graphql-core's coerced values."""
    mutation = schema._schema.mutation_type
    assert mutation is not None
    config = schema.config
    for name, input_type in SINGLE_EVENT_MUTATIONS.items():
        mutation.fields[name].resolve = _one_event(input_type, config)

    async def record_events(
        _root: object, info: GraphQLResolveInfo[Context], input: list[Mapping[str, Any]]
    ) -> list[RecordResult]:
        drafts = [build_draft(inputs.EventInput, event, config) for event in input]
        return await record(info.context, drafts, batch=True)

    mutation.fields["recordEvents"].resolve = record_events


def _one_event(input_type: type, config: StrawberryConfig) -> Resolver:
    async def record_one(
        _root: object, info: GraphQLResolveInfo[Context], input: Mapping[str, Any]
    ) -> RecordResult:
        return (await record(info.context, [build_draft(input_type, input, config)]))[0]

    return record_one
