"""DSpace's statistics endpoints: ``collect``, and DSpace 7+'s ``viewevents`` and ``searchevents``.

These doors are anonymous: their events go to the engine ``SEARCHSTATS_ANONYMOUS_ENGINE`` names,
else to the first engine created. A logged-in DSpace UI sends its own DSpace JWT and XSRF token
(``X-XSRF-TOKEN``, ``DSPACE-XSRF-COOKIE``); they prove nothing here and are ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from app.domain.events import AppliedFilter, EventDraft, EventKind, PageInfo, SortInfo
from app.errors import BadParams, SearchStatsError
from app.rest.dialect import admit_anonymous, client_of, guarded, read_json_object
from app.rest.fields import Fields
from app.rest.origin import public_origin
from app.services.limits import Access
from app.services.record import record_events
from app.services.runtime import Runtime

# DSpace's names for the draft's attributes (the names messages use).
NAMES = {
    "target_id": "targetId",
    "target_type": "targetType",
    "referrer": "referrer",
    "query": "query",
    "scope": "scope",
    "dso_type": "dsoType",
    "configuration": "configuration",
    "applied_filters": "appliedFilters",
    "sort": "sort",
    "page_info": "page",
    "clicked_object": "clickedObject",
}
# Spring's reason phrases (Python's differ for 413, and change between versions).
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# DSpace 7's searchevents refuses a search without its pagination and sort status.
SEARCHEVENTS_REQUIRED = ("page_info", "sort")


def dspace_error(request: Request, error: SearchStatsError) -> Response:
    """Spring Boot's error body, as DSpace's REST API answers."""
    return JSONResponse(
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "status": error.status,
            "error": REASONS.get(error.status) or HTTPStatus(error.status).phrase,
            "message": error.message,
            # The scope's, not ``request.url.path``: the URL decodes the query string as UTF-8 too,
            # and a server may hand over one that is not (a 500 in no format, then).
            "path": request.scope["path"],
        },
        status_code=error.status,
    )


def view_draft(body: dict[str, Any]) -> EventDraft:
    fields = Fields(body, NAMES)
    return EventDraft(
        kind=EventKind.VIEW,
        target_id=fields.text("target_id"),
        target_type=fields.text("target_type"),
        referrer=fields.text("referrer"),
        wire_names=NAMES,
        wire_problems=tuple(fields.problems),
    )


def search_draft(body: dict[str, Any], *, required: tuple[str, ...] = ()) -> EventDraft:
    """A search; its ``page.totalElements`` is the result count (0: a search that found nothing)."""
    fields = Fields(body, NAMES)
    return EventDraft(
        kind=EventKind.SEARCH,
        query=fields.text("query"),
        scope=fields.text("scope"),
        dso_type=fields.text("dso_type"),
        configuration=fields.text("configuration"),
        applied_filters=_applied_filters(fields.objects("applied_filters")),
        sort=_sort(fields.object("sort")),
        page_info=_page(fields.object("page_info")),
        clicked_object=fields.text("clicked_object"),
        wire_names=NAMES,
        wire_required=required,
        wire_problems=tuple(fields.problems),
    )


def collect_draft(body: dict[str, Any]) -> EventDraft:
    """The original endpoint: one body for both kinds, told apart by ``type``."""
    kind = body.get("type")
    if kind == "view":
        return view_draft(body)
    if kind == "search":
        return search_draft(body)
    raise BadParams("type is required" if kind is None else "type must be view or search")


def _applied_filters(items: list[Fields]) -> tuple[AppliedFilter, ...]:
    return tuple(f for f in map(_applied_filter, items) if f is not None)


# An object missing a part reads as absent: the reader reported the part, which rejects the event.
def _applied_filter(fields: Fields) -> AppliedFilter | None:
    name, operator, value = (fields.required_text(key) for key in ("filter", "operator", "value"))
    label = fields.text("label")
    if name is None or operator is None or value is None:
        return None
    return AppliedFilter(filter=name, operator=operator, value=value, label=label)


def _sort(fields: Fields | None) -> SortInfo | None:
    if fields is None:
        return None
    by, order = fields.required_text("by"), fields.required_text("order")
    return SortInfo(by=by, order=order) if by is not None and order is not None else None


def _page(fields: Fields | None) -> PageInfo | None:
    if fields is None:
        return None
    return PageInfo(
        size=fields.integer("size"),
        total_elements=fields.integer("totalElements"),
        total_pages=fields.integer("totalPages"),
        number=fields.integer("number"),
    )


def dspace_routes(runtime: Runtime) -> list[BaseRoute]:
    limit = runtime.settings.max_body_bytes

    async def record(request: Request, draft: EventDraft) -> Response:
        client = client_of(request, "dspace")
        await record_events(runtime=runtime, principal=None, drafts=[draft], client=client)
        return Response(status_code=201)

    async def body_of(request: Request) -> dict[str, Any]:
        await admit_anonymous(runtime, request, Access.WRITE)
        return await read_json_object(request, limit=limit)

    @guarded(dspace_error)
    async def collect(request: Request) -> Response:
        return await record(request, collect_draft(await body_of(request)))

    @guarded(dspace_error)
    async def view_event(request: Request) -> Response:
        return await record(request, view_draft(await body_of(request)))

    @guarded(dspace_error)
    async def search_event(request: Request) -> Response:
        body = await body_of(request)
        return await record(request, search_draft(body, required=SEARCHEVENTS_REQUIRED))

    @guarded(dspace_error)
    async def statistics_root(request: Request) -> Response:
        """The HAL links the DSpace UI follows to find where to send its events."""
        await admit_anonymous(runtime, request, Access.READ)
        root = public_origin(request, runtime.addresses) + "/api/statistics"
        links = {name: {"href": f"{root}/{name}"} for name in ("viewevents", "searchevents")}
        links["self"] = {"href": root}
        return JSONResponse({"_links": links}, media_type="application/hal+json")

    return [
        Route("/api/statistics", statistics_root, methods=["GET"]),
        Route("/api/statistics/collect", collect, methods=["POST"]),
        Route("/api/statistics/viewevents", view_event, methods=["POST"]),
        Route("/api/statistics/searchevents", search_event, methods=["POST"]),
    ]
