"""The ASGI GraphQL endpoint: builds each request's context, admits websocket connections."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UnsetType

from app.errors import NotAuthenticated, SearchStatsError
from app.services.live import LiveStats
from app.services.runtime import Runtime
from graphql_schema.context import Context
from graphql_schema.extensions import MASKED_MESSAGE
from graphql_schema.http import GraphQLDoor
from graphql_schema.schema import build_schema
from graphql_schema.websocket import LegacyWSHandler, TransportWSHandler

log = logging.getLogger("searchstats.graphql")

# The legacy graphql-ws protocol has no ping of its own: keep idle connections from timing out.
LEGACY_KEEP_ALIVE_SECONDS = 15


class SearchStatsGraphQL(GraphQLDoor):
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        super().__init__(
            build_schema(settings),
            graphql_ide="graphiql",
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(
                seconds=settings.graphql_connection_init_timeout_seconds
            ),
            max_subscriptions_per_connection=settings.graphql_max_subscriptions,
            keep_alive=True,
            keep_alive_interval=LEGACY_KEEP_ALIVE_SECONDS,
            # Credentials are never cookies: a page on another origin must bring its own key.
            allowed_origins=settings.cors_origins,
        )
        self.runtime = runtime
        self.live = LiveStats(runtime)
        self.max_message_bytes = settings.max_body_bytes

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        return Context(
            runtime=self.runtime,
            live=self.live,
            authorization=request.headers.get("authorization"),
            user_agent=request.headers.get("user-agent"),
            client_address=self.runtime.addresses.of_scope(request.scope),
        )

    async def get_root_value(self, request: Any) -> None:
        return None

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Admit a connection with a valid credential.

        Without one, it is rejected as Strawberry does (graphql-transport-ws: 4403; graphql-ws:
        ``connection_error``). Any other refusal (storage down, too many failed credentials
        from the address) is raised as the contract's error, an unexpected one masked and
        logged, for graphql_schema/websocket.py's handlers to close the connection with.
        """
        try:
            await context.connect()
        except NotAuthenticated as error:
            raise ConnectionRejectionError({"code": error.code, "message": error.message}) from None
        except SearchStatsError:
            raise
        except Exception:
            log.exception("unexpected error admitting a websocket connection")
            raise SearchStatsError(MASKED_MESSAGE) from None
        return UnsetType()  # acknowledge without a payload


def graphql_app(runtime: Runtime) -> SearchStatsGraphQL:
    return SearchStatsGraphQL(runtime)
