"""The schema, with its hostile-query limits on by default."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLInputObjectType
from graphql.validation import MaxIntrospectionDepthRule, NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter, SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from app.settings import Settings
from graphql_schema.batches import read_inputs_directly
from graphql_schema.extensions import OperationGuards
from graphql_schema.guards_runner import GuardedRunner
from graphql_schema.mutations import Mutation
from graphql_schema.queries import Query
from graphql_schema.scalars import SCALARS
from graphql_schema.subscriptions import SharedLiveResults, Subscription


class Schema(strawberry.Schema):
    """Strawberry's schema, each operation guarded by ``guards`` at every stage."""

    def __init__(self, *, guards: OperationGuards, **options: Any) -> None:
        super().__init__(**options)
        if self.extensions or self.directives:
            # Their hooks would never run: the runner calls the guards alone.
            raise TypeError("this schema runs its guards only: no extension, no directive")
        self.guards = guards

    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return GuardedRunner(execution_context, self.guards)

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """One operation, one result (HTTP's way): a subscription is refused once parsed, before
        it is validated or run (``InvalidOperationTypeError``). Run here, its stream would be
        taken for a value: internal_error. Websockets run it through ``stream``."""
        if allowed_operation_types is None:
            allowed_operation_types = DEFAULT_ALLOWED_OPERATION_TYPES
        return await super().execute(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            allowed_operation_types=set(allowed_operation_types) - {OperationType.SUBSCRIPTION},
            operation_extensions=operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Strawberry logs every error, a client's mistakes and refused requests too: a flood
        of them would flood the log. OperationGuards logs the unexpected ones, once each."""


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    settings = settings or Settings()
    # Each limiter instance makes a new rule class, which would make every request miss the
    # validation cache (keyed by the rules): the rules are made once, added per request.
    rules = [
        *QueryDepthLimiter(max_depth=settings.graphql_max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases).validation_rules,
        # The depth limit skips introspection fields, whose lists nest into each other without
        # end: this bounds their nesting (a standard introspection query passes).
        MaxIntrospectionDepthRule,
    ]
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    built = Schema(
        guards=OperationGuards(rules=rules, max_tokens=settings.graphql_max_tokens),
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        execution_context_class=SharedLiveResults,
        config=StrawberryConfig(scalar_map=SCALARS),
    )
    read_inputs_directly(built)
    one_of_checked_by_graphql_core(built)
    return built


def one_of_checked_by_graphql_core(schema: strawberry.Schema) -> None:
    """One-of inputs (``EventInput``) checked by graphql-core's own rule instead of Strawberry's.

    Strawberry checks a one-of input value in the type's ``out_type``, which knows nothing of
    where the value lies: a variable's batch of 1,000 events with one wrong was refused without
    its index. graphql-core checks inputs marked ``is_one_of`` as it coerces them, and its error
    names the item ("… invalid value at [6]: Within OneOf Input Object type 'EventInput', exactly
    one field must be specified…"). Same rule, same SDL (Strawberry prints ``@oneOf`` itself).
    """
    for named in schema._schema.type_map.values():
        if isinstance(named, GraphQLInputObjectType) and "out_type" in vars(named):
            definition = named.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if definition is not None and definition.is_one_of:
                named.is_one_of = True
                del named.out_type  # Strawberry's check; the type's own returns the value


# The printed SDL (schema.graphql) is exported from this instance; limits do not change it.
schema = build_schema(Settings(database_url="sqlite+aiosqlite://", secret_key="sdl"))
