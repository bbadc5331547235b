"""Input types: the vendors' fields in camelCase; Strawberry turns each event into its draft."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from app.domain.events import EventKind
from graphql_schema.drafts import drafts_from_input, drafts_from_one_of


@strawberry.enum(description="What kind of result was clicked (Doofinder's product types).")
class ProductTypeEnum(Enum):
    SEARCH = "search"
    BANNER = "banner"
    CUSTOM_RESULT = "custom_result"
    RECOMMENDATION = "recommendation"
    QUIZZ = "quizz"
    AICHAT = "aichat"


@strawberry.input(description="Fields every event may carry.")
class EventFields:
    engine: strawberry.ID | None = strawberry.field(
        default=None, description="Engine hashid; default: the account's first engine."
    )
    event_id: str | None = strawberry.field(
        default=None, description="Idempotency key: a retry with the same id stores nothing new."
    )
    occurred_at: datetime | None = strawberry.field(
        default=None, description="When it happened (back-fill), with an offset; default: now."
    )
    session_id: str | None = None
    user_id: str | None = None


@strawberry.input(description="A page view of a DSpace object.")
class ViewInput(EventFields):
    target_id: str
    target_type: str
    referrer: str | None = None


@strawberry.input(description="One discovery filter applied to a search.")
class AppliedFilterInput:
    filter: str
    operator: str
    value: str
    label: str | None = None


@strawberry.input(description="The sort status of a search.")
class SortInput:
    by: str
    order: str


@strawberry.input(description="The pagination status of a search; totalElements = result count.")
class PageInput:
    size: int | None = None
    total_elements: int | None = None
    total_pages: int | None = None
    number: int | None = None


@strawberry.input(
    description="A search; resultCount 0 (or page.totalElements 0) is a no-result search."
)
class SearchInput(EventFields):
    query: str
    result_count: int | None = None
    scope: str | None = None
    dso_type: str | None = None
    configuration: str | None = None
    applied_filters: list[AppliedFilterInput] | None = None
    sort: SortInput | None = None
    page: PageInput | None = None


@strawberry.input(description="A visit to a page of a store.")
class VisitInput(EventFields):
    store: str
    url: str | None = None
    page_type: str | None = None
    dfid: str | None = None


@strawberry.input(description="A click on a search result; rank is 0-based in the result set.")
class ClickInput(EventFields):
    document_id: str
    rank: int
    query_id: str | None = None
    content_source_id: str | None = None
    page: int | None = None
    event: str | None = strawberry.field(default=None, description="A label for the click.")
    product_type: ProductTypeEnum | None = None


@strawberry.input(description="Thumbs up (score 1) or down (score -1) on a search result.")
class FeedbackInput(EventFields):
    document_id: str
    score: int
    query_id: str | None = None
    content_source_id: str | None = None
    rank: int | None = None
    page: int | None = None


@strawberry.input(one_of=True, description="Exactly one event of any kind.")
class EventInput:
    view: ViewInput | None = strawberry.UNSET
    search: SearchInput | None = strawberry.UNSET
    visit: VisitInput | None = strawberry.UNSET
    click: ClickInput | None = strawberry.UNSET
    feedback: FeedbackInput | None = strawberry.UNSET


# Resolvers receive EventDrafts, built from the validated values: a 1,000-event batch must not
# pay Strawberry's per-field conversion, and an input object per event, a thousand times.
drafts_from_input(ViewInput, EventKind.VIEW)
drafts_from_input(SearchInput, EventKind.SEARCH)
drafts_from_input(VisitInput, EventKind.VISIT)
drafts_from_input(ClickInput, EventKind.CLICK)
drafts_from_input(FeedbackInput, EventKind.FEEDBACK)
drafts_from_one_of(
    EventInput,
    {
        "view": ViewInput,
        "search": SearchInput,
        "visit": VisitInput,
        "click": ClickInput,
        "feedback": FeedbackInput,
    },
)
