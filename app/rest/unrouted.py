"""Requests no route takes, answered in the error format of the dialect whose paths they are under.

An unknown path is a 404 ``not_found``, a method its path does not answer a 405 (``bad_params``,
with ``Allow`` naming the methods it does). A client of a vendor's API reads its errors in that
vendor's format whatever went wrong, a mistyped path included; outside the vendors' paths the
service's own format answers, ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.errors import MethodNotAllowed, NotFound, SearchStatsError
from app.rest.dialect import RenderError
from app.rest.doofinder_errors import doofinder_error
from app.rest.dspace import dspace_error
from app.rest.workplace import workplace_error

# Each dialect's paths, by their common prefix.
DIALECTS: tuple[tuple[str, RenderError], ...] = (
    ("/api/v2/stats/", doofinder_error),
    ("/api/statistics", dspace_error),
    ("/api/ws/v1/", workplace_error),
)


def render_for(path: str) -> RenderError:
    for prefix, render in DIALECTS:
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            return render
    return doofinder_error  # the service's own format is the same: {"error": {"code", "message"}}


async def unrouted(request: Request, exc: Exception) -> Response:
    """Starlette's handler for the 404 and 405 its router raises."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        error: SearchStatsError = MethodNotAllowed(
            f"{request.method} is not allowed here; this path answers {allowed}"
        )
    else:
        error = NotFound("there is nothing at this path")
    response = render_for(request.scope["path"])(request, error)
    response.headers.update(exc.headers or {})
    return response


HANDLERS = {404: unrouted, 405: unrouted}
