"""The Prometheus scrape endpoint."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.services.metrics import Metrics


def metrics_routes(metrics: Metrics) -> list[BaseRoute]:
    async def scrape(_request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return [Route("/metrics", scrape, methods=["GET"])]
