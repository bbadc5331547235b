"""Every operation's guards, in one place and one pass.

Parse and validate each distinct document once (LRU caches shared by every request), within the
hostile-query limits (tokens, depth, aliases, introspection); count the operation against its
caller's rate limit; put the contract's error code on every error and mask unexpected ones.

Each method is one of Strawberry's extension hooks (named in its docstring), called at the same
point of the operation by graphql_schema/guards_runner.py instead of through Strawberry's
extension machinery, which cost more than the guards themselves.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    validate,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.validation import ASTValidationRule
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.types import ExecutionContext as StrawberryExecutionContext
from strawberry.types import StreamExecutionResult
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType

from app.errors import BadParams, SearchStatsError
from app.services.limits import Access
from graphql_schema.context import Context

log = logging.getLogger("searchstats.graphql")
MASKED_MESSAGE = "Unexpected error."
OPERATION_NAME_NEEDED = "Must provide operation name if query contains multiple operations."
SUBSCRIPTION_OVER_HTTP = (
    "subscriptions are not run over HTTP: subscribe over a websocket at /graphql "
    "(graphql-transport-ws or graphql-ws; docs/live.md)"
)
CACHED_DOCUMENTS = 1024

# Keyed by the document's text and the parse options (the token limit): a document over the
# limit never enters the cache as parsed.
_parsed = functools.lru_cache(maxsize=CACHED_DOCUMENTS)(parse)


class _Parsed:
    """A parsed document as a cache key, by identity.

    A document's own hash walks its whole syntax tree (tens of microseconds for a small
    mutation, on every request); the parse cache hands out the same object for the same text,
    so its identity is as good a key. The key holds the document, so its id is never reused
    while the key is cached.
    """

    __slots__ = ("document",)

    def __init__(self, document: DocumentNode) -> None:
        self.document = document

    def __hash__(self) -> int:
        return id(self.document)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Parsed) and other.document is self.document


@functools.lru_cache(maxsize=CACHED_DOCUMENTS)
def _validated(
    schema: GraphQLSchema, parsed: _Parsed, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    # Strawberry's validate_document with its own rules but its one-of one: one-of inputs are
    # checked by graphql-core's (graphql_schema.schema.one_of_checked_by_graphql_core).
    return validate(schema, parsed.document, (*rules, MaybeNullValidationRule))


class OperationGuards:
    """One schema's guards; an operation's state stays in its execution context."""

    def __init__(self, *, rules: Sequence[type[ASTValidationRule]], max_tokens: int) -> None:
        self._rules = tuple(rules)
        self._max_tokens = max_tokens

    def begin(self, execution: StrawberryExecutionContext) -> None:
        """``on_operation``, before the operation: its limits."""
        execution.parse_options["max_tokens"] = self._max_tokens
        execution.validation_rules = execution.validation_rules + self._rules

    def end(self, execution: StrawberryExecutionContext) -> None:
        """``on_operation``, after an operation that raised nothing: its errors coded."""
        result = execution.result
        if result is not None and result.errors:
            result.errors = [coded(error) for error in result.errors]

    def parse(self, execution: StrawberryExecutionContext) -> None:
        """``on_parse``, before Strawberry's own parse (which a parsed document skips)."""
        # On a syntax error the document is left unparsed: Strawberry parses it again where it
        # reports the error with the others (a syntax error raised here would escape the
        # operation before its code is set).
        with contextlib.suppress(GraphQLError):
            execution.graphql_document = _parsed(execution.query, **execution.parse_options)

    def validate(self, execution: StrawberryExecutionContext) -> None:
        """``on_validate``, before Strawberry's own validation (which errors set here skip)."""
        document = execution.graphql_document
        assert document is not None  # Strawberry validates only what it parsed
        errors = _validated(execution.schema._schema, _Parsed(document), execution.validation_rules)
        if not errors and _unnamed_among_several(execution, document):
            errors = [GraphQLError(OPERATION_NAME_NEEDED)]
        execution.pre_execution_errors = errors

    async def admit(self, execution: StrawberryExecutionContext) -> None:
        """``on_execute``, before execution: mutations count as writes; queries and each
        subscription started, as reads."""
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

    def code_stream_result(self, result: StreamExecutionResult) -> None:
        """``on_stream_result``: error codes on each message of a subscription too."""
        if isinstance(result, ExecutionResult) and result.errors:
            result.errors = [coded(error) for error in result.errors]


def _unnamed_among_several(execution: StrawberryExecutionContext, document: DocumentNode) -> bool:
    """Several operations and no ``operationName``: GraphQL's GetOperation is an error there.

    Strawberry runs the first of them instead (its ``operation_name`` falls back to the first
    operation's name, so graphql-core never sees the name missing): a client sending a document
    of a query and a mutation would run whichever comes first.
    """
    if execution._provided_operation_name is not None:  # as the client sent it
        return False
    operations = (d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    return next(operations, None) is not None and next(operations, None) is not None


async def _admit(context: Context, access: Access) -> None:
    """The limiter's answer; anything unexpected is logged and answered masked.

    An error escaping the hook would reach the client as it is: Strawberry builds that result
    after the operation's errors were coded.
    """
    try:
        await context.admit(access)
    except SearchStatsError:
        raise
    except Exception as error:
        log.error("rate limit check failed", exc_info=error)
        raise SearchStatsError() from None


# The original errors a coded error keeps, for a transport that reads them: a retry-later
# refusal's HTTP status; an operation that cannot be told, for which graphql-transport-ws closes
# the connection with 4400, as Strawberry does.
_KEPT = (SearchStatsError, CannotGetOperationTypeError)


def coded(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if isinstance(original, SearchStatsError):
        code, message = original.code, original.message
    elif original is None or isinstance(original, GraphQLError):
        # Syntax, validation and variable coercion errors: the request itself is malformed.
        code, message = BadParams.code, error.message
    elif isinstance(original, CannotGetOperationTypeError | InvalidOperationTypeError):
        # Raised where Strawberry streams an operation (websockets): over HTTP it answers them
        # itself, with a 400.
        code, message = BadParams.code, _operation_type_message(original)
    else:
        log.error("unexpected error in %s", error.path, exc_info=original)
        code, message = "internal_error", MASKED_MESSAGE
    extensions: dict[str, Any] = dict(error.extensions or {})
    extensions["code"] = code
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=original if isinstance(original, _KEPT) else None,
        extensions=extensions,
    )


def _operation_type_message(error: CannotGetOperationTypeError | InvalidOperationTypeError) -> str:
    if isinstance(error, InvalidOperationTypeError):
        if error.operation_type is OperationType.SUBSCRIPTION:
            return SUBSCRIPTION_OVER_HTTP
        # Only the legacy protocol runs subscriptions alone.
        kind = "queries" if error.operation_type is OperationType.QUERY else "mutations"
        return (
            f"{kind} are not run over the legacy graphql-ws protocol, subscriptions only: "
            "send them over HTTP (POST /graphql) or graphql-transport-ws"
        )
    if error.operation_name is None:  # without a name, the first operation runs
        return "the document holds no operation to run"
    return error.as_http_error_reason()  # as over HTTP: Unknown operation named "…".
