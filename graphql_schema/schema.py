"""The schema, with its hostile-query limits on by default."""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from graphql.validation import MaxIntrospectionDepthRule
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from app.settings import Settings
from graphql_schema.extensions import CodedParserCache, ErrorCodes
from graphql_schema.mutations import Mutation
from graphql_schema.queries import Query
from graphql_schema.rate_limits import RateLimited
from graphql_schema.scalars import SCALARS
from graphql_schema.subscriptions import SharedLiveResults, Subscription


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Strawberry logs every error, a client's mistakes and refused requests too: a flood
        of them would flood the log. ErrorCodes logs the unexpected ones, once each."""


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    depth, aliases, tokens = (
        settings.graphql_max_depth,
        settings.graphql_max_aliases,
        settings.graphql_max_tokens,
    )
    # Each limiter instance makes a new rule class, which would make every request miss the
    # validation cache (keyed by the rules): make the rules once, add them per request.
    rules = [
        *QueryDepthLimiter(max_depth=depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=aliases).validation_rules,
        # The depth limit skips introspection fields, whose lists nest into each other without
        # end: this bounds their nesting (a standard introspection query passes).
        MaxIntrospectionDepthRule,
    ]
    extensions: list[Callable[[], SchemaExtension]] = [
        ErrorCodes,
        RateLimited,
        lambda: AddValidationRules(rules),
        lambda: MaxTokensLimiter(max_token_count=tokens),
        # Parse and validate each distinct document once, not on every request (the LRU
        # caches are module-level in Strawberry, shared by the per-request instances).
        lambda: CodedParserCache(maxsize=1024),
        lambda: ValidationCache(maxsize=1024),
    ]
    if not settings.graphql_introspection:
        extensions.append(DisableIntrospection)
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        execution_context_class=SharedLiveResults,
        config=StrawberryConfig(scalar_map=SCALARS),
    )


# The printed SDL (schema.graphql) is exported from this instance; limits do not change it.
schema = build_schema(Settings(database_url="sqlite+aiosqlite://", secret_key="sdl"))
