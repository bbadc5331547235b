"""Subscriptions: recorded events as they are committed, and stats that follow them."""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from contextvars import ContextVar
from datetime import datetime
from enum import Enum
from inspect import isawaitable
from typing import Annotated, Any

import orjson
import strawberry
from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLResolveInfo,
    OperationType,
)
from graphql.pyutils import Path

from app.domain.events import EventKind
from app.domain.tenancy import named_engines
from app.services import live
from app.services.expiry import while_credential_holds
from app.services.stats import StatsReport
from graphql_schema.context import Info
from graphql_schema.execution import AcyclicExecutionContext
from graphql_schema.fanout import LiveSink, current_socket
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
    id: strawberry.ID = strawberry.field(description="The id its RecordResult gave it.")
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
            engines=list(named_engines(engines)),
            kinds=None if types is None else [EventKind(t.value) for t in types],
        )
        held = while_credential_holds(events, principal, context.recheck())
        async with aclosing(held) as stream:
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
        context = info.context
        principal = await context.principal()  # the credential first, as at the REST doors
        query = stats_query(
            start=from_,
            end=to,
            timezone=timezone,
            granularity=granularity,
            engines=engines,
            filter=filter,
            info=info,
        )
        reports = context.live.watch(
            principal=principal, query=query, interval_ms=interval_ms, sink=_direct_sink()
        )
        held = while_credential_holds(reports, principal, context.recheck())
        async with aclosing(held) as stream:
            async for report in stream:
                yield Stats(report=report)


# The executor of the subscription being started in this task (see build_resolve_info).
_SUBSCRIBING: ContextVar[SharedLiveResults | None] = ContextVar("subscribing", default=None)


def _direct_sink() -> LiveSink | None:
    """Over our websocket handlers, the answers are written by the feed (graphql_schema.fanout)."""
    socket, executor = current_socket(), _SUBSCRIBING.get()
    if socket is None or executor is None:
        return None
    return LiveSink(socket, executor.encoder())


class SharedLiveResults(AcyclicExecutionContext):
    """Executes a liveStats selection once per report for all identical subscriptions.

    Every watcher of a feed receives the same report: subscribers that sent the same document
    (the parser cache makes it the same node) with the same variables get the same data, so it
    is computed for the first of them and reused by the others, and encoded once for those
    written to directly. Fan-out then costs a lookup per subscriber instead of a GraphQL
    execution.
    """

    def build_resolve_info(
        self,
        field_def: GraphQLField,
        field_nodes: list[FieldNode],
        parent_type: GraphQLObjectType,
        path: Path,
    ) -> GraphQLResolveInfo[Any]:
        if (
            path.prev is None
            and self.root_value is None
            and self.operation.operation is OperationType.SUBSCRIPTION
        ):
            # Starting a subscription: its resolver, run next in this task, may need this
            # executor to execute its events (as graphql-core does, on a copy per event).
            _SUBSCRIBING.set(self)
        return super().build_resolve_info(field_def, field_nodes, parent_type, path)

    def execute_operation(self, serially: bool | None = None) -> Any:
        if not isinstance(self.root_value, Stats):
            return super().execute_operation(serially)
        answers = _ANSWERS.for_report(self.root_value.report)
        key = self._shared_key()
        if key in answers:
            return ExecutionResult(data=answers[key].data)
        result = super().execute_operation(serially)
        if isawaitable(result):
            return self._remember(answers, key, result)
        return _stored(answers, key, self.operation, result)

    def encoder(self) -> Callable[[StatsReport], str | None]:
        """This subscription's ``{"data": …}`` for a report, as JSON; None if it has errors.

        Called on the executor that started the subscription; each report is executed on a
        copy, as graphql-core does for its events.
        """
        key = self._shared_key()

        def encoded(report: StatsReport) -> str | None:
            answers = _ANSWERS.for_report(report)
            answer = answers.get(key)
            if answer is None:
                event = self.build_per_event_executor(Stats(report=report))
                result = event.execute_operation(False)
                if isawaitable(result):
                    getattr(result, "close", lambda: None)()
                    return None  # executed where it can be awaited: by Strawberry
                answer = answers.get(key)
                if answer is None:
                    return None  # errors: Strawberry sends them, formatted and coded
            if answer.text is None:
                answer.text = _json({"data": answer.data})
            return answer.text

        return encoded

    def _shared_key(self) -> tuple[int, str]:
        return (id(self.operation), repr(sorted(self.variable_values.coerced.items())))

    async def _remember(
        self, answers: dict[tuple[int, str], _Answer], key: tuple[int, str], pending: Awaitable[Any]
    ) -> Any:
        return _stored(answers, key, self.operation, await pending)


def _json(value: object) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # beyond what orjson writes (an integer over 64 bits)
        return json.dumps(value, separators=(",", ":"))


class _Answer:
    __slots__ = ("data", "node", "text")

    def __init__(self, node: object, data: Any) -> None:
        self.node = node  # kept so that its id is not reused
        self.data = data
        self.text: str | None = None


def _stored(
    answers: dict[tuple[int, str], _Answer], key: tuple[int, str], node: Any, result: Any
) -> Any:
    if isinstance(result, ExecutionResult) and not result.errors:
        answers[key] = _Answer(node, result.data)
    return result


class _Answers:
    """The data computed for each report, kept as long as the report itself lives (a report is
    immutable once published): while its feed still offers it, or it is on its way to a
    subscriber. Kept for the last 256 reports instead, they held their data and JSON long after:
    2.7 MB an answer for two months by hour, 680 MB for one dashboard."""

    def __init__(self) -> None:
        self._by_report: dict[int, dict[tuple[int, str], _Answer]] = {}

    def for_report(self, report: StatsReport) -> dict[tuple[int, str], _Answer]:
        answers = self._by_report.get(id(report))
        if answers is None:
            answers = self._by_report[id(report)] = {}
            # Called as the report goes, before its id can be another's.
            weakref.finalize(report, self._by_report.pop, id(report), None)
        return answers


_ANSWERS = _Answers()


def shared_answers() -> int:
    """Reports whose answers are kept (for tests)."""
    return len(_ANSWERS._by_report)
