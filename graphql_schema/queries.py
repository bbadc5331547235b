"""Queries."""

from __future__ import annotations

from typing import Annotated

import strawberry

from app.services.accounts import account_engines
from app.services.stats import compute_stats
from graphql_schema.context import Info
from graphql_schema.stats_args import StatsFilterInput, stats_query
from graphql_schema.stats_types import Granularity, Stats
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

    @strawberry.field(
        description=(
            "Time series, rates and breakdowns for one period. from/to take ISO dates (whole "
            "days in timezone, both included) or ISO date-times ([from, to))."
        )
    )
    async def stats(
        self,
        info: Info,
        from_: Annotated[str, strawberry.argument(name="from")],
        to: str,
        timezone: str = "Etc/UTC",
        granularity: Granularity = Granularity.DAY,
        engines: list[strawberry.ID] | None = None,
        filter: StatsFilterInput | None = None,
    ) -> Stats:
        context = info.context
        principal = await context.principal()  # the credential first, as at the REST doors
        query = stats_query(
            start=from_,
            end=to,
            timezone=timezone,
            granularity=granularity,
            engines=engines,
            filter=filter,
            info=info,
        )
        report = await compute_stats(runtime=context.runtime, principal=principal, query=query)
        return Stats(report=report)
