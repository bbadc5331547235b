"""The vendors' REST dialects, each a thin translation onto the services."""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.rest.dspace import dspace_routes
from app.services.runtime import Runtime


def rest_routes(runtime: Runtime) -> list[BaseRoute]:
    return [*dspace_routes(runtime)]
