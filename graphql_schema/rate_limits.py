"""Every GraphQL operation counts against its caller's rate limit: mutations as writes, the rest
(queries and each subscription started) as reads. The rule itself is ``app.services.limits``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from app.errors import SearchStatsError
from app.services.limits import Access
from graphql_schema.context import Context

log = logging.getLogger(__name__)


class RateLimited(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        context = execution.context
        if isinstance(context, Context):
            kind = execution.operation_type
            access = Access.WRITE if kind is OperationType.MUTATION else Access.READ
            try:
                await _admit(context, access)
            except SearchStatsError as error:
                if kind is OperationType.SUBSCRIPTION:
                    raise  # Strawberry ends the subscription with it
                # A result set here stands for the execution: nothing runs.
                execution.result = GraphQLExecutionResult(
                    data=None, errors=[GraphQLError(error.message, original_error=error)]
                )
        yield


async def _admit(context: Context, access: Access) -> None:
    """The limiter's answer; anything unexpected is logged and answered masked.

    An error escaping this hook would reach the client as it is: Strawberry builds that result
    after the error-coding extension has run.
    """
    try:
        await context.admit(access)
    except SearchStatsError:
        raise
    except Exception as error:
        log.error("rate limit check failed", exc_info=error)
        raise SearchStatsError() from None
