"""Doofinder's error body, for every Doofinder endpoint: ``{"error": {"code", "message"}}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import SearchStatsError


def doofinder_error(_request: Request, error: SearchStatsError) -> Response:
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}}, status_code=error.status
    )
