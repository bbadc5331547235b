"""Workplace Search's analytics event endpoint: ``POST /api/ws/v1/analytics/event``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.domain.events import EventDraft, EventKind
from app.errors import BadParams, SearchStatsError
from app.rest.dialect import caller, client_of, guarded, read_json_object
from app.rest.fields import Fields
from app.services.limits import Access
from app.services.record import record_events
from app.services.runtime import Runtime

# Workplace Search's names for the draft's attributes; a click's label is its ``event``.
NAMES = {
    "query_id": "query_id",
    "document_id": "document_id",
    "content_source_id": "content_source_id",
    "page": "page",
    "rank": "rank",
    "label": "event",
    "score": "score",
}
KINDS = {"click": EventKind.CLICK, "feedback": EventKind.FEEDBACK}
# Elastic requires every field of an event, more than a click or feedback means at the least.
POSITION = ("query_id", "document_id", "content_source_id", "page", "rank")
REQUIRED = {EventKind.CLICK: (*POSITION, "label"), EventKind.FEEDBACK: (*POSITION, "score")}


def workplace_error(_request: Request, error: SearchStatsError) -> Response:
    """Elastic's error body: every problem, one string each."""
    return JSONResponse({"errors": list(error.details)}, status_code=error.status)


def event_draft(body: dict[str, Any]) -> EventDraft:
    fields = Fields(body, NAMES)
    query_id, document_id = fields.text("query_id"), fields.text("document_id")
    content_source_id = fields.text("content_source_id")
    page, rank = fields.integer("page"), fields.integer("rank")
    kind = _kind(body.get("type"), fields)
    is_click = kind is EventKind.CLICK
    return EventDraft(
        kind=kind,
        query_id=query_id,
        document_id=document_id,
        content_source_id=content_source_id,
        page=page,
        rank=rank,
        label=fields.text("label") if is_click else None,
        score=None if is_click else fields.integer("score"),
        wire_names=NAMES,
        wire_required=REQUIRED[kind],
        wire_problems=tuple(fields.problems),
    )


def _kind(value: object, fields: Fields) -> EventKind:
    """Which rules apply; without a valid ``type``, the problems found so far come with it."""
    if isinstance(value, str) and value in KINDS:
        return KINDS[value]
    problem = "type is required" if value is None else "type must be click or feedback"
    raise BadParams.of([problem, *(message for _, message in fields.problems)])


def workplace_routes(runtime: Runtime) -> list[BaseRoute]:
    @guarded(workplace_error)
    async def analytics_event(request: Request) -> Response:
        principal = await caller(runtime, request, Access.WRITE)
        body = await read_json_object(request, limit=runtime.settings.max_body_bytes)
        await record_events(
            runtime=runtime,
            principal=principal,
            drafts=[event_draft(body)],
            client=client_of(request, "workplace"),
        )
        return Response(status_code=200)

    return [Route("/api/ws/v1/analytics/event", analytics_event, methods=["POST"])]
