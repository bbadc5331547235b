"""The GraphQL guards' caches: each distinct document parsed and validated once, per rule set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from app.settings import Settings
from graphql_schema import extensions
from graphql_schema.schema import Schema, build_schema

INTROSPECTION = "{ __schema { queryType { name } } }"


def _settings(**overrides: Any) -> Settings:
    return Settings(database_url="sqlite+aiosqlite://", secret_key="guards", **overrides)


@pytest.fixture
def validations() -> Callable[[], int]:
    """How many documents were validated since the test began (the cache's misses)."""
    extensions._validated.cache_clear()
    return lambda: extensions._validated.cache_info().misses


async def test_a_document_is_parsed_and_validated_once(validations: Callable[[], int]) -> None:
    schema = build_schema(_settings())
    query = "{ __typename }"
    for _ in range(3):
        result = await schema.execute(query)
        assert result.errors is None
        assert result.data == {"__typename": "Query"}
    assert validations() == 1


async def test_the_cache_keeps_rule_sets_apart(validations: Callable[[], int]) -> None:
    open_schema = build_schema(_settings())
    closed_schema = build_schema(_settings(graphql_introspection=False))

    allowed = await open_schema.execute(INTROSPECTION)
    refused = await closed_schema.execute(INTROSPECTION)

    assert allowed.errors is None
    assert refused.errors
    assert "introspection" in refused.errors[0].message.lower()
    assert refused.errors[0].extensions == {"code": "bad_params"}
    assert validations() == 2  # one document, two rule sets: validated for each


async def test_a_syntax_error_is_answered_with_its_code() -> None:
    result = await build_schema(_settings()).execute("{ __typename ")
    assert result.errors
    assert result.errors[0].extensions == {"code": "bad_params"}


async def test_a_strawberry_extension_is_refused_as_it_would_never_run() -> None:
    # The schema's runner calls its guards alone: an extension's hooks would be skipped silently.
    @strawberry.type
    class Query:
        @strawberry.field
        def ok(self) -> bool:
            return True

    guards = extensions.OperationGuards(rules=[], max_tokens=1000)
    schema = Schema(guards=guards, query=Query)
    assert (await schema.execute("{ ok }")).data == {"ok": True}
    # The rate limit is awaited: a synchronous execution is refused, as Strawberry refuses an
    # asynchronous hook in one.
    refused = schema.execute_sync("{ ok }")
    assert refused.errors
    assert "synchronously" in refused.errors[0].message
    with pytest.raises(TypeError, match="no extension"):
        Schema(guards=guards, query=Query, extensions=[MaskErrors])


async def test_the_token_limit_is_set_before_parsing() -> None:
    schema = build_schema(_settings(graphql_max_tokens=100))
    result = await schema.execute("{ " + "__typename " * 120 + "}")
    assert result.errors
    assert "token" in result.errors[0].message.lower()
    assert result.errors[0].extensions == {"code": "bad_params"}


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (OperationType.QUERY, "queries are not run over the legacy graphql-ws protocol"),
        (OperationType.MUTATION, "mutations are not run over the legacy graphql-ws protocol"),
        (OperationType.SUBSCRIPTION, "subscriptions are not run over HTTP"),
    ],
)
def test_an_operation_of_a_type_the_transport_does_not_run_is_bad_params(
    kind: OperationType, message: str
) -> None:
    refused = GraphQLError("not allowed", original_error=InvalidOperationTypeError(kind))
    error = extensions.coded(refused)
    assert error.message.startswith(message)
    assert error.extensions == {"code": "bad_params"}
