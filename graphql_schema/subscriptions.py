"""Subscriptions: recorded events as they are committed, and stats that follow them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable
from contextlib import aclosing
from datetime import datetime
from enum import Enum
from inspect import isawaitable
from typing import Annotated, Any

import strawberry
from graphql import ExecutionResult
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.domain.events import EventKind
from app.services import live
from app.services.expiry import until_expired
from graphql_schema.context import Info
from graphql_schema.stats_args import StatsFilterInput, stats_query
from graphql_schema.stats_types import DeviceEnum, Granularity, Stats


@strawberry.enum(description="What happened.")
class EventType(Enum):
    VIEW = "view"
    SEARCH = "search"
    VISIT = "visit"
    CLICK = "click"
    FEEDBACK = "feedback"


@strawberry.type(description="An event, once its transaction committed.")
class RecordedEvent:
    id: strawberry.ID
    engine: strawberry.ID = strawberry.field(description="The engine's hashid.")
    type: EventType
    occurred_at: datetime
    query_id: str | None
    query: str | None = strawberry.field(description="A search's query.")
    document_id: str | None
    device: DeviceEnum | None = strawberry.field(description="Null when unknown.")
    is_bot: bool

    @classmethod
    def of(cls, event: live.RecordedEvent) -> RecordedEvent:
        device = event.device if event.device in DeviceEnum._value2member_map_ else None
        return cls(
            id=strawberry.ID(event.id),
            engine=strawberry.ID(event.engine),
            type=EventType(event.kind.value),
            occurred_at=event.occurred_at,
            query_id=event.query_id,
            query=event.query,
            document_id=event.document_id,
            device=DeviceEnum(device) if device else None,
            is_bot=event.is_bot,
        )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Events of the caller's engines (all, or those named), as they are committed."
    )
    async def event_recorded(
        self,
        info: Info,
        engines: list[strawberry.ID] | None = None,
        types: list[EventType] | None = None,
    ) -> AsyncGenerator[RecordedEvent, None]:
        context = info.context
        principal = await context.principal()
        events = live.recorded_events(
            runtime=context.runtime,
            principal=principal,
            engines=[str(e) for e in engines or ()],
            kinds=[EventKind(t.value) for t in types or ()],
        )
        async with aclosing(until_expired(events, principal)) as stream:
            async for event in stream:
                yield RecordedEvent.of(event)

    @strawberry.subscription(
        description=(
            "The stats query's answer now, then again whenever new events change it, at most "
            f"once per intervalMs ({live.MIN_INTERVAL_MS} to {live.MAX_INTERVAL_MS})."
        )
    )
    async def live_stats(
        self,
        info: Info,
        from_: Annotated[str, strawberry.argument(name="from")],
        to: str,
        timezone: str = "Etc/UTC",
        granularity: Granularity = Granularity.DAY,
        engines: list[strawberry.ID] | None = None,
        filter: StatsFilterInput | None = None,
        interval_ms: int = live.DEFAULT_INTERVAL_MS,
    ) -> AsyncGenerator[Stats, None]:
        query = stats_query(
            start=from_,
            end=to,
            timezone=timezone,
            granularity=granularity,
            engines=engines,
            filter=filter,
            selections=info.selected_fields[0].selections,
        )
        context = info.context
        principal = await context.principal()
        reports = context.live.watch(principal=principal, query=query, interval_ms=interval_ms)
        async with aclosing(until_expired(reports, principal)) as stream:
            async for report in stream:
                yield Stats(report=report)


class SharedLiveResults(StrawberryGraphQLCoreExecutionContext):
    """Executes a liveStats selection once per report for all identical subscriptions.

    Every watcher of a feed receives the same report: subscribers that sent the same document
    (the parser cache makes it the same node) with the same variables get the same data, so it
    is computed for the first of them and reused by the others. Fan-out then costs a lookup per
    subscriber instead of a GraphQL execution.
    """

    def execute_operation(self, serially: bool | None = None) -> Any:
        if not isinstance(self.root_value, Stats):
            return super().execute_operation(serially)
        answers = _ANSWERS.for_report(self.root_value.report)
        key = (id(self.operation), repr(sorted(self.variable_values.coerced.items())))
        if key in answers:
            return ExecutionResult(data=answers[key][1])
        result = super().execute_operation(serially)
        if isawaitable(result):
            return self._remember(answers, key, result)
        return _stored(answers, key, self.operation, result)

    async def _remember(
        self, answers: dict[tuple[int, str], Any], key: tuple[int, str], pending: Awaitable[Any]
    ) -> Any:
        return _stored(answers, key, self.operation, await pending)


def _stored(
    answers: dict[tuple[int, str], Any], key: tuple[int, str], node: Any, result: Any
) -> Any:
    if isinstance(result, ExecutionResult) and not result.errors:
        answers[key] = (node, result.data)  # the node is kept so that its id is not reused
    return result


class _Answers:
    """The data computed for the most recent reports (a report is immutable once published)."""

    def __init__(self, reports: int) -> None:
        self._reports = reports
        self._by_report: OrderedDict[int, tuple[object, dict[tuple[int, str], Any]]] = OrderedDict()

    def for_report(self, report: object) -> dict[tuple[int, str], Any]:
        entry = self._by_report.get(id(report))
        if entry is None or entry[0] is not report:
            entry = self._by_report[id(report)] = (report, {})
            while len(self._by_report) > self._reports:
                self._by_report.popitem(last=False)
        return entry[1]


_ANSWERS = _Answers(reports=256)
