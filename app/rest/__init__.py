"""The vendors' REST dialects, each a thin translation onto the services."""

from __future__ import annotations

from starlette.routing import BaseRoute

from app.rest.doofinder import doofinder_routes
from app.rest.doofinder_stats import doofinder_stats_routes
from app.rest.dspace import dspace_routes
from app.rest.openapi import openapi_routes
from app.rest.workplace import workplace_routes
from app.services.runtime import Runtime


def rest_routes(runtime: Runtime) -> list[BaseRoute]:
    # Routes are tried in order: the ingest doors, by far the busiest, come first.
    return [
        *doofinder_routes(runtime),
        *workplace_routes(runtime),
        *dspace_routes(runtime),
        *doofinder_stats_routes(runtime),
        *openapi_routes(),
    ]
