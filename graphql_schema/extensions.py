"""Error codes on every GraphQL error, unexpected errors masked and logged."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.types import StreamExecutionResult
from strawberry.types.execution import ExecutionResult

from app.errors import BadParams, SearchStatsError

log = logging.getLogger("searchstats.graphql")
MASKED_MESSAGE = "Unexpected error."


class ErrorCodes(SchemaExtension):
    """Puts the contract's code in ``extensions.code``; hides what clients must not see."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is None or not result.errors:
            return
        result.errors = [coded(error) for error in result.errors]

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        """The same for each message of a subscription."""
        if isinstance(result, ExecutionResult) and result.errors:
            result.errors = [coded(error) for error in result.errors]
        yield


class CodedParserCache(ParserCache):
    """Strawberry's ParserCache, whose syntax errors keep their code.

    The cache's parse runs where Strawberry does not catch a syntax error, which then leaves
    the operation before ErrorCodes sees it. On a syntax error the document is left unparsed:
    Strawberry parses it again where it reports the error with the others.
    """

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        with contextlib.suppress(GraphQLError):
            execution.graphql_document = self.cached_parse_document(
                execution.query, **execution.parse_options
            )
        yield


def coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, SearchStatsError):
        code, message = original.code, original.message
    elif original is None or isinstance(original, GraphQLError):
        # Syntax, validation and variable coercion errors: the request itself is malformed.
        code, message = BadParams.code, error.message
    else:
        log.error("unexpected error in %s", error.path, exc_info=original)
        code, message = "internal_error", MASKED_MESSAGE
    extensions = dict(error.extensions or {})
    extensions["code"] = code
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=original if isinstance(original, SearchStatsError) else None,
        extensions=extensions,
    )
