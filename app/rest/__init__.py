"""The vendors' REST dialects, each a thin translation onto the services."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from app.rest.doofinder import doofinder_routes
from app.rest.doofinder_stats import doofinder_stats_routes
from app.rest.dspace import dspace_routes
from app.rest.openapi import openapi_routes
from app.rest.workplace import workplace_routes
from app.services.runtime import Runtime


def rest_routes(runtime: Runtime) -> list[BaseRoute]:
    # Routes are tried in order: the ingest doors, by far the busiest, come first.
    doors = [
        *doofinder_routes(runtime),
        *workplace_routes(runtime),
        *dspace_routes(runtime),
        *doofinder_stats_routes(runtime),
    ]
    return [*doors, *openapi_routes(), *with_trailing_slash(doors)]


def with_trailing_slash(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Each door again at its path with a trailing slash, answered as without it.

    The vendors' servers route both alike (Phoenix and Rails drop the slash, Spring 5 matches
    it). Left to Starlette, the slash is a redirect to an absolute URL made of the scheme and
    Host this server saw: behind a proxy, its internal address.
    """
    return [
        Route(f"{route.path}/", route.endpoint, methods=route.methods)
        for route in routes
        if isinstance(route, Route)
    ]
