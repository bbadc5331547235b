"""The GraphQL ``stats`` query: exact local buckets, rates and breakdowns on both databases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant

RECORD = """
mutation($input: [EventInput!]!) { recordEvents(input: $input) { id queryId } }"""

COUNTS = """
query($from: String!, $to: String!, $tz: String!, $g: Granularity!, $filter: StatsFilterInput) {
  stats(from: $from, to: $to, timezone: $tz, granularity: $g, filter: $filter) {
    searches { points { start timestamp count } total totalCount }
    clicks { totalCount }
  }
}"""


async def post(client: httpx.AsyncClient, tenant: Tenant, query: str, **variables: Any) -> Any:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=tenant.token
    )
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


async def searches_at(client: httpx.AsyncClient, tenant: Tenant, *instants: str) -> list[str]:
    events = [{"search": {"query": f"q{i}", "occurredAt": t}} for i, t in enumerate(instants)]
    data = await post(client, tenant, RECORD, input=events)
    return [r["queryId"] for r in data["recordEvents"]]


@pytest.fixture(autouse=True)
def _frozen_future(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded instants lie in 2025; nothing here depends on today's date."""


async def test_new_york_spring_forward_day_has_23_hour_buckets(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # 2025-03-09: 02:00 EST jumps to 03:00 EDT.
    await searches_at(
        client,
        tenant,
        "2025-03-09T01:30:00-05:00",  # hour 01
        "2025-03-09T03:10:00-04:00",  # hour 03 (02 does not exist)
        "2025-03-09T23:59:59-04:00",  # last hour
        "2025-03-10T00:00:00-04:00",  # next day: outside
    )
    data = await post(
        client,
        tenant,
        COUNTS,
        **{"from": "2025-03-09", "to": "2025-03-09"},
        tz="America/New_York",
        g="HOUR",
    )
    points = data["stats"]["searches"]["points"]
    assert len(points) == 23
    assert points[0]["start"] == "2025-03-09T00:00:00-05:00"
    assert points[2]["start"] == "2025-03-09T03:00:00-04:00"
    counts = {p["start"]: p["count"] for p in points}
    assert counts["2025-03-09T01:00:00-05:00"] == 1
    assert counts["2025-03-09T03:00:00-04:00"] == 1
    assert counts["2025-03-09T23:00:00-04:00"] == 1
    assert data["stats"]["searches"]["totalCount"] == 3
    assert data["stats"]["searches"]["total"] == 23
    assert points[0]["timestamp"] == int(
        datetime.fromisoformat(points[0]["start"]).timestamp() * 1000
    )


async def test_day_buckets_in_kathmandu_start_at_local_midnight(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # Asia/Kathmandu is UTC+05:45: local midnight is 18:15 UTC the day before.
    await searches_at(client, tenant, "2025-01-01T18:14:59Z", "2025-01-01T18:15:00Z")
    data = await post(
        client,
        tenant,
        COUNTS,
        **{"from": "2025-01-01", "to": "2025-01-02"},
        tz="Asia/Kathmandu",
        g="DAY",
    )
    points = data["stats"]["searches"]["points"]
    assert [(p["start"], p["count"]) for p in points] == [
        ("2025-01-01T00:00:00+05:45", 1),
        ("2025-01-02T00:00:00+05:45", 1),
    ]


async def test_filtered_and_unfiltered_counts_agree(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await searches_at(client, tenant, "2025-05-01T10:00:00Z", "2025-05-02T10:00:00Z")
    args = {"from": "2025-05-01", "to": "2025-05-03", "tz": "Europe/Madrid", "g": "DAY"}
    plain = await post(client, tenant, COUNTS, **args)
    filtered = await post(client, tenant, COUNTS, filter={"query": "q0"}, **args)
    assert [p["count"] for p in plain["stats"]["searches"]["points"]] == [1, 1, 0]
    assert [p["count"] for p in filtered["stats"]["searches"]["points"]] == [1, 0, 0]
