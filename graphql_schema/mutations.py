"""Mutations: one per event kind, a batch of up to 1,000 events of any kinds, and forgetting a
user."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import strawberry

from app.domain.events import EventDraft
from app.domain.tenancy import named_engines
from app.services.privacy import forget_user
from app.services.record import record_events
from graphql_schema.context import Context, Info
from graphql_schema.inputs import (
    ClickInput,
    EventInput,
    FeedbackInput,
    SearchInput,
    ViewInput,
    VisitInput,
)
from graphql_schema.types import ForgetUserResult, RecordResult

# Each input arrives as the EventDraft its type's from_input hook builds (graphql_schema/drafts.py);
# the schema keeps the declared input types. What runs for the event mutations is the resolver of
# graphql_schema/batches.py, which does the same from the values graphql-core coerced, without
# Strawberry's conversion: these resolvers declare the fields and their arguments.
View = Annotated[EventDraft, strawberry.argument(graphql_type=ViewInput)]
Search = Annotated[EventDraft, strawberry.argument(graphql_type=SearchInput)]
Visit = Annotated[EventDraft, strawberry.argument(graphql_type=VisitInput)]
Click = Annotated[EventDraft, strawberry.argument(graphql_type=ClickInput)]
Feedback = Annotated[EventDraft, strawberry.argument(graphql_type=FeedbackInput)]
Events = Annotated[list[EventDraft], strawberry.argument(graphql_type=list[EventInput])]


async def record(
    context: Context, drafts: Sequence[EventDraft], *, batch: bool = False
) -> list[RecordResult]:
    """Record the drafts as the caller, and answer as the mutations do."""
    outcomes = await record_events(
        runtime=context.runtime,
        principal=await context.principal(),
        drafts=drafts,
        client=context.client,
        batch=batch,
    )
    return [RecordResult.of(outcome) for outcome in outcomes]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Record a page view.")
    async def record_view(self, info: Info, input: View) -> RecordResult:
        return (await record(info.context, [input]))[0]

    @strawberry.mutation(description="Record a search; its queryId links later clicks to it.")
    async def record_search(self, info: Info, input: Search) -> RecordResult:
        return (await record(info.context, [input]))[0]

    @strawberry.mutation(description="Record a visit.")
    async def record_visit(self, info: Info, input: Visit) -> RecordResult:
        return (await record(info.context, [input]))[0]

    @strawberry.mutation(description="Record a click on a search result.")
    async def record_click(self, info: Info, input: Click) -> RecordResult:
        return (await record(info.context, [input]))[0]

    @strawberry.mutation(description="Record thumbs up/down feedback on a search result.")
    async def record_feedback(self, info: Info, input: Feedback) -> RecordResult:
        return (await record(info.context, [input]))[0]

    @strawberry.mutation(
        description="Record up to 1,000 events all together: one invalid event rejects them all."
    )
    async def record_events(self, info: Info, input: Events) -> list[RecordResult]:
        return await record(info.context, input, batch=True)

    @strawberry.mutation(
        description=(
            "Delete every event of a user (its userId) in the caller's engines, or in those "
            "named; stats stay consistent, as if the events had never been recorded."
        )
    )
    async def forget_user(
        self, info: Info, user_id: str, engines: list[strawberry.ID] | None = None
    ) -> ForgetUserResult:
        context = info.context
        deleted = await forget_user(
            database=context.runtime.database,
            policy=context.runtime.engines,
            broker=context.runtime.broker,
            principal=await context.principal(),
            user_id=user_id,
            engines=named_engines(engines),
        )
        return ForgetUserResult(user_id=user_id, deleted_events=deleted)
