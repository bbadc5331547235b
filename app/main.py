"""The composition root: settings in, a ready ASGI application out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from app.collector import settle_garbage_collector
from app.http.access_log import AccessLog, lean_log_records
from app.http.bodies import BodyLimits
from app.http.cors import CrossOrigin
from app.http.health import health_routes
from app.http.log_stream import unbatch_logs
from app.http.metrics import metrics_routes
from app.rest import rest_routes
from app.rest.unrouted import HANDLERS as UNROUTED
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from app.switch_interval import shorten_switch_interval
from graphql_schema.app import graphql_app

log = logging.getLogger(__name__)
DASHBOARD = Path(__file__).resolve().parent.parent / "frontend_examples" / "dashboard" / "static"


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Starlette:
    settings = settings or Settings()
    runtime = runtime or build_runtime(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            unbatch_logs()  # the worker may end by a signal: no line left waiting
            await runtime.stop()

    graphql = graphql_app(runtime)
    # Routes are tried in order: the busiest doors first, probes and pages last.
    routes: list[BaseRoute] = [
        Route("/graphql", graphql),  # any method: the door answers 405 in GraphQL's shape
        *rest_routes(runtime),
        WebSocketRoute("/graphql", graphql),  # subscriptions
        *health_routes(runtime),
        *metrics_routes(runtime.metrics),
        *_dashboard(),
    ]
    middleware = [
        Middleware(
            AccessLog,
            addresses=runtime.addresses,
            metrics=runtime.metrics,
            lines=settings.access_log,
        ),
        Middleware(
            CrossOrigin,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_credentials=True,
            # The DSpace Angular UI sends X-Referrer and X-Correlation-ID with every request;
            # Apollo Client its name and version when given them, and apollo-require-preflight.
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-Correlation-ID",
                "X-Referrer",
                "X-XSRF-TOKEN",
                "X-Request-ID",
                "apollographql-client-name",
                "apollographql-client-version",
                "apollo-require-preflight",
            ],
            expose_headers=["DSPACE-XSRF-TOKEN", "Retry-After", "X-Request-ID"],
            max_age=600,
        ),
        Middleware(
            BodyLimits,
            max_bytes=settings.max_body_bytes,
            timeout_seconds=settings.body_timeout_seconds,
        ),
    ]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers=UNROUTED, lifespan=lifespan
    )
    app.state.runtime = runtime
    return app


def _dashboard() -> list[BaseRoute]:
    """The live dashboard example at /dashboard, when this checkout has its built files."""
    if not DASHBOARD.is_dir():
        return []
    return [Mount("/dashboard", StaticFiles(directory=DASHBOARD, html=True), name="dashboard")]


def app_from_environment() -> Starlette:
    """The factory ``uvicorn`` workers call: settings come from the environment."""
    lean_log_records()
    app = create_app(Settings())
    settle_garbage_collector()
    shorten_switch_interval()
    return app
