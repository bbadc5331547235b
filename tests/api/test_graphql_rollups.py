"""Rollup counters are kept with the events: one per kind, plus the derived ones."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlmodel import col

from app.services.runtime import Runtime
from app.storage.models import Rollup
from tests.api.helpers import RECORD_EVENTS, data, gql, record, rollup_totals
from tests.conftest import Tenant

RECORD_SEARCH = record("recordSearch")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


async def test_rollups_count_every_metric(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    found = data(
        await gql(client, tenant, RECORD_SEARCH, input={"query": "found", "resultCount": 5}),
        "recordSearch",
    )
    data(
        await gql(client, tenant, RECORD_SEARCH, input={"query": "nothing", "resultCount": 0}),
        "recordSearch",
    )
    linked = found["queryId"]
    events = [
        {"view": {"targetId": "0b7d3b8e-1c2f-4f55-9d55-51f0e34c1a6e", "targetType": "item"}},
        {"visit": {"store": "s"}},
        {"click": {"queryId": linked, "documentId": "a", "rank": 0}},
        {"click": {"queryId": linked, "documentId": "b", "rank": 2}},
        {"click": {"documentId": "c", "rank": 7}},  # not linked to any search
        {"click": {"queryId": "no-such-search", "documentId": "d", "rank": 1}},
        {"feedback": {"queryId": linked, "documentId": "a", "score": 1}},
        {"feedback": {"documentId": "b", "score": -1}},
    ]
    data(await gql(client, tenant, RECORD_EVENTS, input=events), "recordEvents")

    assert await rollup_totals(runtime, tenant.hashid) == {
        "view": 1,
        "search": 2,
        "search_no_result": 1,
        "visit": 1,
        "click": 4,
        "search_clicked": 1,  # two clicks on one search count it once
        "linked_click": 2,
        "linked_click_position": 1 + 3,  # ranks are 0-based, positions 1-based
        "feedback": 2,
        "feedback_positive": 1,
        "feedback_negative": 1,
    }


async def test_a_click_counts_its_search_at_the_searchs_time(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    searched_at = datetime(2020, 5, 5, 10, 7, 30, tzinfo=UTC)
    search = data(
        await gql(
            client,
            tenant,
            RECORD_SEARCH,
            input={"query": "old", "occurredAt": searched_at.isoformat()},
        ),
        "recordSearch",
    )
    click = {"queryId": search["queryId"], "documentId": "d", "rank": 0}
    data(await gql(client, tenant, record("recordClick"), input=click), "recordClick")

    async with runtime.database.sessions() as session:
        rows = (await session.execute(select(Rollup))).scalars().all()
    buckets = {row.metric: row.bucket for row in rows}
    assert buckets["search"] == buckets["search_clicked"] == datetime(2020, 5, 5, 10, 0, tzinfo=UTC)
    assert buckets["click"] > buckets["search"]
    assert {(row.device, row.is_bot) for row in rows} == {("desktop", False)}


async def test_rollups_are_kept_per_device_and_robot_flag(
    client: httpx.AsyncClient, tenant: Tenant, runtime: Runtime
) -> None:
    robot = tenant.token | {"User-Agent": GOOGLEBOT}
    for credential in (tenant, robot, robot):
        data(await gql(client, credential, RECORD_SEARCH, input={"query": "q"}), "recordSearch")

    async with runtime.database.sessions() as session:
        statement = select(col(Rollup.is_bot), col(Rollup.count)).where(
            col(Rollup.metric) == "search"
        )
        counts = {bool(bot): int(n) for bot, n in (await session.execute(statement)).all()}
    assert counts == {False: 1, True: 2}
