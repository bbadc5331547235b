"""Queries."""

from __future__ import annotations

import strawberry

from app.services.accounts import account_engines
from graphql_schema.context import Info
from graphql_schema.types import Engine


@strawberry.type
class Query:
    @strawberry.field(description="The caller's search engines; the first is the default.")
    async def engines(self, info: Info) -> list[Engine]:
        context = info.context
        records = await account_engines(
            policy=context.runtime.engines, principal=await context.principal()
        )
        return [
            Engine(hashid=strawberry.ID(r.hashid), name=r.name, is_default=index == 0)
            for index, r in enumerate(records)
        ]
