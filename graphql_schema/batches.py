"""recordEvents reads its list as graphql-core coerced it, without Strawberry's conversion.

Strawberry converts a list argument item by item before it calls the resolver: a type dispatch,
an input context and a path for every item, about 3.5 µs an event, although each item's type
builds its own draft (graphql_schema/drafts.py). A batch holds up to 1,000 events, so the
field's GraphQL resolver is replaced by one that builds the drafts from the coerced list itself
and then records them as the mutation's own resolver does. The schema is Strawberry's, as
declared in graphql_schema/mutations.py: same field, argument, types and SDL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import strawberry
from graphql import GraphQLResolveInfo

from graphql_schema.context import Context
from graphql_schema.drafts import build_draft
from graphql_schema.inputs import EventInput
from graphql_schema.mutations import record
from graphql_schema.types import RecordResult


def read_batches_directly(schema: strawberry.Schema) -> None:
    """Resolve ``recordEvents`` of this schema from graphql-core's coerced values."""
    mutation = schema._schema.mutation_type
    assert mutation is not None
    config = schema.config

    async def record_events(
        _root: object, info: GraphQLResolveInfo[Context], input: list[Mapping[str, Any]]
    ) -> list[RecordResult]:
        drafts = [build_draft(EventInput, event, config) for event in input]
        return await record(info.context, drafts, batch=True)

    mutation.fields["recordEvents"].resolve = record_events
