"""The two websocket protocols' handlers: Strawberry's, with the gaps they leave filled.

- Each operation's task may be written to by the live fan-out (graphql_schema/fanout.py).
"""

from __future__ import annotations

import asyncio

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from graphql_schema.context import Context
from graphql_schema.fanout import follow


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws."""

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        def current() -> bool:  # not completed by either side
            return self.operations.get(operation.id) is operation and not operation.completed

        follow(self.websocket, operation.id, "next", current)
        await super().run_operation(operation)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws (Apollo's subscriptions-transport-ws)."""

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        task = asyncio.current_task()

        def current() -> bool:  # not stopped, nor replaced by another of the same id
            return self.tasks.get(operation_id) is task

        follow(self.websocket, operation_id, "data", current)
        await super().handle_async_results(operation_id, query, operation_name, variables)
