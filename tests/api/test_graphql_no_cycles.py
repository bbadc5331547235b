"""GraphQL operations through the real schema leave no reference cycles: their executor, context
and variables are freed when each operation ends, not at the cyclic collector's next pass."""

from __future__ import annotations

import gc
from typing import Any

import httpx
from graphql import Executor

from graphql_schema.context import Context
from tests.api.helpers import gql, record
from tests.conftest import Tenant

VISIT = {"sessionId": "s", "store": "shop"}
STATS = """
query { stats(from: "2026-01-01T00:00:00Z", to: "2026-01-02T00:00:00Z") { visits { total } } }
"""


async def test_mutations_and_queries_leave_no_cycles(
    client: httpx.AsyncClient, tenant: Tenant, saved_garbage: list[Any]
) -> None:
    for _ in range(3):
        visit = await gql(client, tenant, record("recordVisit"), input=VISIT)
        assert visit["data"]["recordVisit"]["status"] == "registered", visit
        stats = await gql(client, tenant, STATS)
        assert "errors" not in stats, stats
    gc.collect()
    left = [o for o in saved_garbage if isinstance(o, Executor | Context)]
    assert not left, f"{len(left)} executors and contexts were left to the cyclic collector"
