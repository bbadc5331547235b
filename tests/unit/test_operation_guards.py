"""The GraphQL guards' caches: each distinct document parsed and validated once, per rule set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.settings import Settings
from graphql_schema import extensions
from graphql_schema.schema import build_schema

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
