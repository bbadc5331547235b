"""The ASGI GraphQL endpoint: builds each request's context."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from app.services.runtime import Runtime
from graphql_schema.context import Context
from graphql_schema.schema import build_schema


class SearchStatsGraphQL(GraphQL[Context, None]):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__(build_schema(runtime.settings), graphql_ide="graphiql")
        self.runtime = runtime

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            runtime=self.runtime,
            authorization=request.headers.get("authorization"),
            user_agent=request.headers.get("user-agent"),
        )

    async def get_root_value(self, request: Any) -> None:
        return None


def graphql_app(runtime: Runtime) -> SearchStatsGraphQL:
    return SearchStatsGraphQL(runtime)
