"""Liveness and readiness probes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from app.services.runtime import Runtime

# The probes' paths: their answers are the worker's state, not errors of a request (the access
# log counts none of them in searchstats_errors_total).
PROBES = ("/healthz", "/readyz")


def health_routes(runtime: Runtime) -> list[BaseRoute]:
    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        ready = await runtime.readiness()
        return JSONResponse(
            {"status": "ready" if ready.ok else "unavailable", "checks": ready.checks},
            status_code=200 if ready.ok else 503,
            headers=None if ready.ok else {"Retry-After": "1"},
        )

    return [Route(PROBES[0], healthz), Route(PROBES[1], readyz)]
