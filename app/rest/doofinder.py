"""Doofinder's visit endpoint: ``POST /api/v2/stats/visit``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.domain.events import EventDraft, EventKind
from app.rest.dialect import caller, client_of, guarded, read_json_object
from app.rest.doofinder_errors import doofinder_error
from app.rest.fields import Fields
from app.services.limits import Access
from app.services.record import record_events
from app.services.runtime import Runtime

# Doofinder's names for the draft's attributes; ``hashid`` names the engine.
NAMES = {
    "engine": "hashid",
    "session_id": "session_id",
    "user_id": "user_id",
    "store": "store",
    "url": "url",
    "page_type": "page_type",
    "dfid": "dfid",
}
REGISTERED = b'{"status":"registered"}'
# VisitRegisterRequest's own bounds, tighter than the event's.
MAX_SESSION_ID = 32
MAX_USER_ID = 36


def visit_draft(body: dict[str, Any]) -> EventDraft:
    fields = Fields(body, NAMES)
    # Deprecated: the server detects the client's address and device itself. They are read only
    # to check their type, and never kept.
    fields.text("ip")
    fields.text("user_agent")
    return EventDraft(
        kind=EventKind.VISIT,
        engine=fields.text("engine"),
        store=fields.text("store"),
        session_id=fields.text("session_id", max_length=MAX_SESSION_ID),
        user_id=fields.text("user_id", max_length=MAX_USER_ID),
        dfid=fields.text("dfid"),
        page_type=fields.text("page_type"),
        url=fields.text("url"),
        wire_names=NAMES,
        wire_problems=tuple(fields.problems),
    )


def doofinder_routes(runtime: Runtime) -> list[BaseRoute]:
    @guarded(doofinder_error)
    async def visit(request: Request) -> Response:
        principal = await caller(runtime, request, Access.WRITE)
        body = await read_json_object(request, limit=runtime.settings.max_body_bytes)
        await record_events(
            runtime=runtime,
            principal=principal,
            drafts=[visit_draft(body)],
            client=client_of(request, "doofinder"),
        )
        return Response(REGISTERED, media_type="application/json")

    return [Route("/api/v2/stats/visit", visit, methods=["POST"])]
