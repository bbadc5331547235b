"""Output types."""

from __future__ import annotations

import strawberry

from app.services.record import RecordResult as RecordOutcome


@strawberry.type(description="What became of one recorded event.")
class RecordResult:
    id: strawberry.ID = strawberry.field(
        description="The stored event's id: 32 hex digits, opaque (ids tell nothing of other"
        " accounts' events)."
    )
    status: str = strawberry.field(description='"registered" once the event is committed.')
    duplicate: bool = strawberry.field(
        description="True when an event with the same eventId was already stored."
    )
    query_id: str | None = strawberry.field(
        description="For a search: the id that its clicks and feedback carry to link to it."
    )

    @classmethod
    def of(cls, outcome: RecordOutcome) -> RecordResult:
        return cls(
            id=strawberry.ID(outcome.id),
            status=outcome.status,
            duplicate=outcome.duplicate,
            query_id=outcome.query_id,
        )


@strawberry.type(description="A search engine of the caller's account.")
class Engine:
    hashid: strawberry.ID
    name: str
    is_default: bool


@strawberry.type(description="What forgetUser deleted.")
class ForgetUserResult:
    user_id: str
    deleted_events: int = strawberry.field(description="How many events were deleted.")
