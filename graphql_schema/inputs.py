"""Input types: the vendors' fields in camelCase, translated into domain event drafts."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from app.domain.events import (
    AppliedFilter,
    EventDraft,
    EventKind,
    PageInfo,
    ProductType,
    SortInfo,
)
from graphql_schema.input_builders import build_quickly


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

    def _common(self) -> dict[str, object]:
        return {
            "engine": self.engine,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "session_id": self.session_id,
            "user_id": self.user_id,
        }


@strawberry.input(description="A page view of a DSpace object.")
class ViewInput(EventFields):
    target_id: str
    target_type: str
    referrer: str | None = None

    def to_draft(self) -> EventDraft:
        return EventDraft(
            kind=EventKind.VIEW,
            target_id=self.target_id,
            target_type=self.target_type,
            referrer=self.referrer,
            **self._common(),  # type: ignore[arg-type]
        )


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

    def to_draft(self) -> EventDraft:
        return EventDraft(
            kind=EventKind.SEARCH,
            query=self.query,
            result_count=self.result_count,
            scope=self.scope,
            dso_type=self.dso_type,
            configuration=self.configuration,
            applied_filters=tuple(
                AppliedFilter(f.filter, f.operator, f.value, f.label)
                for f in self.applied_filters or ()
            ),
            sort=SortInfo(self.sort.by, self.sort.order) if self.sort else None,
            page_info=(
                PageInfo(
                    self.page.size,
                    self.page.total_elements,
                    self.page.total_pages,
                    self.page.number,
                )
                if self.page
                else None
            ),
            **self._common(),  # type: ignore[arg-type]
        )


@strawberry.input(description="A visit to a page of a store.")
class VisitInput(EventFields):
    store: str
    url: str | None = None
    page_type: str | None = None
    dfid: str | None = None

    def to_draft(self) -> EventDraft:
        return EventDraft(
            kind=EventKind.VISIT,
            store=self.store,
            url=self.url,
            page_type=self.page_type,
            dfid=self.dfid,
            **self._common(),  # type: ignore[arg-type]
        )


@strawberry.input(description="A click on a search result; rank is 0-based in the result set.")
class ClickInput(EventFields):
    document_id: str
    rank: int
    query_id: str | None = None
    content_source_id: str | None = None
    page: int | None = None
    event: str | None = strawberry.field(default=None, description="A label for the click.")
    product_type: ProductTypeEnum | None = None

    def to_draft(self) -> EventDraft:
        return EventDraft(
            kind=EventKind.CLICK,
            document_id=self.document_id,
            rank=self.rank,
            query_id=self.query_id,
            content_source_id=self.content_source_id,
            page=self.page,
            label=self.event,
            product_type=ProductType(self.product_type.value) if self.product_type else None,
            **self._common(),  # type: ignore[arg-type]
        )


@strawberry.input(description="Thumbs up (score 1) or down (score -1) on a search result.")
class FeedbackInput(EventFields):
    document_id: str
    score: int
    query_id: str | None = None
    content_source_id: str | None = None
    rank: int | None = None
    page: int | None = None

    def to_draft(self) -> EventDraft:
        return EventDraft(
            kind=EventKind.FEEDBACK,
            document_id=self.document_id,
            score=self.score,
            query_id=self.query_id,
            content_source_id=self.content_source_id,
            rank=self.rank,
            page=self.page,
            **self._common(),  # type: ignore[arg-type]
        )


@strawberry.input(one_of=True, description="Exactly one event of any kind.")
class EventInput:
    view: ViewInput | None = strawberry.UNSET
    search: SearchInput | None = strawberry.UNSET
    visit: VisitInput | None = strawberry.UNSET
    click: ClickInput | None = strawberry.UNSET
    feedback: FeedbackInput | None = strawberry.UNSET

    def to_draft(self) -> EventDraft:
        for event in (self.view, self.search, self.visit, self.click, self.feedback):
            if event:
                return event.to_draft()
        raise AssertionError("a one-of input holds exactly one field")


# Built straight from the validated values: a 1,000-event batch must not pay Strawberry's
# per-field conversion a thousand times.
build_quickly(
    EventInput,
    ViewInput,
    SearchInput,
    VisitInput,
    ClickInput,
    FeedbackInput,
    AppliedFilterInput,
    SortInput,
    PageInput,
)
