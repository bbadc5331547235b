"""Hostile JSON and oversized fields on every door: each a 400 in the door's dialect, never a
500, nothing stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.services.runtime import Runtime
from tests.api.helpers import stored_events
from tests.conftest import Tenant

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

ITEM = "43f9bb3e-f90d-458f-9858-7e4589481d18"
MEGABYTE_OF_TEXT = "q" * (1024 * 1024)


@dataclass(frozen=True)
class Door:
    path: str
    body: dict[str, Any]
    authenticated: bool
    message: Callable[[Any], str]


def graphql_message(body: Any) -> str:
    [error] = body["errors"]
    assert error["extensions"]["code"] == "bad_params"
    message: str = error["message"]
    return message


def doofinder_message(body: Any) -> str:
    assert body["error"]["code"] == "bad_params"
    message: str = body["error"]["message"]
    return message


def dspace_message(body: Any) -> str:
    assert (body["status"], body["error"]) == (400, "Bad Request")
    message: str = body["message"]
    return message


def workplace_message(body: Any) -> str:
    return "; ".join(body["errors"])


DOORS = {
    "dspace-collect": Door(
        "/api/statistics/collect",
        {"type": "view", "targetId": ITEM, "targetType": "item"},
        False,
        dspace_message,
    ),
    "dspace-searchevents": Door(
        "/api/statistics/searchevents",
        {"query": "q", "page": {"size": 5}, "sort": {"by": "score", "order": "desc"}},
        False,
        dspace_message,
    ),
    "doofinder": Door("/api/v2/stats/visit", {"store": "main"}, True, doofinder_message),
    "workplace": Door(
        "/api/ws/v1/analytics/event",
        {
            "type": "click",
            "query_id": "q1",
            "document_id": "d1",
            "content_source_id": "c1",
            "page": 1,
            "rank": 0,
            "event": "api",
        },
        True,
        workplace_message,
    ),
    "graphql": Door(
        "/graphql",
        {"query": 'mutation { recordVisit(input: {store: "main"}) { id } }'},
        True,
        graphql_message,
    ),
}


def with_member(body: dict[str, Any], fragment: str) -> bytes:
    """The door's valid body with one more member, ``"x": <fragment>``, as raw JSON text."""
    return (json.dumps(body)[:-1] + ', "x": ' + fragment + "}").encode("utf-8", "surrogatepass")


def duplicated(body: dict[str, Any]) -> bytes:
    key = next(iter(body))
    return (json.dumps(body)[:-1] + f", {json.dumps(key)}: {json.dumps(body[key])}}}").encode()


HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], bytes], str]] = {
    "deep-nesting": (lambda b: with_member(b, "[" * 5000 + "]" * 5000), "nests deeper"),
    "huge-integer": (lambda b: with_member(b, "9" * 40), "out of range"),
    "integer-past-64-bits": (lambda b: with_member(b, str(2**64)), "out of range"),
    "nan": (lambda b: with_member(b, "NaN"), "not valid JSON"),
    "infinity": (lambda b: with_member(b, "Infinity"), "not valid JSON"),
    "float-overflow": (lambda b: with_member(b, "1e999"), "out of range"),
    "lone-surrogate": (lambda b: with_member(b, '"\\udc00"'), "lone surrogate"),
    "nul": (lambda b: with_member(b, '"a\\u0000b"'), "NUL"),
    "invalid-utf8": (lambda b: with_member(b, '"a"')[:-3] + b'\xc3"}', "not valid JSON"),
    "duplicate-key": (duplicated, "duplicate key"),
    "trailing-garbage": (lambda b: json.dumps(b).encode() + b" {}", "not valid JSON"),
    "empty": (lambda b: b"", "empty"),
}


def headers(door: Door, tenant: Tenant) -> dict[str, str]:
    return {"Content-Type": "application/json"} | (tenant.token if door.authenticated else {})


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("name", DOORS)
async def test_hostile_json_is_bad_params_in_the_doors_dialect(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, name: str, case: str
) -> None:
    door = DOORS[name]
    make, words = HOSTILE[case]
    response = await client.post(door.path, content=make(door.body), headers=headers(door, tenant))
    assert response.status_code == 400, response.text
    assert words in door.message(response.json())
    assert await stored_events(runtime) == []


@pytest.mark.parametrize("name", DOORS)
async def test_each_doors_valid_body_is_recorded(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, name: str
) -> None:
    """The bodies the hostile cases start from are valid: the 400s above are theirs alone."""
    door = DOORS[name]
    response = await client.post(door.path, json=door.body, headers=headers(door, tenant))
    assert response.status_code in (200, 201), response.text
    assert "errors" not in (response.json() if response.content else {})
    assert len(await stored_events(runtime)) == 1


# A megabyte of text in each field a door stores or filters on: a 400, never a row.
OVERSIZED: dict[str, tuple[str, dict[str, Any]]] = {
    "dspace-query": ("dspace-searchevents", {"query": MEGABYTE_OF_TEXT}),
    "dspace-filter-value": (
        "dspace-searchevents",
        {"appliedFilters": [{"filter": "title", "operator": "equals", "value": MEGABYTE_OF_TEXT}]},
    ),
    "dspace-filter-label": (
        "dspace-searchevents",
        {
            "appliedFilters": [
                {"filter": "t", "operator": "equals", "value": "v", "label": MEGABYTE_OF_TEXT}
            ]
        },
    ),
    "dspace-sort-by": (
        "dspace-searchevents",
        {"sort": {"by": MEGABYTE_OF_TEXT, "order": "asc"}},
    ),
    "dspace-target-type": ("dspace-collect", {"targetType": MEGABYTE_OF_TEXT}),
    "dspace-referrer": ("dspace-collect", {"referrer": MEGABYTE_OF_TEXT}),
    "doofinder-url": ("doofinder", {"url": MEGABYTE_OF_TEXT}),
    "doofinder-store": ("doofinder", {"store": MEGABYTE_OF_TEXT}),
    "workplace-document": ("workplace", {"document_id": MEGABYTE_OF_TEXT}),
    "workplace-label": ("workplace", {"event": MEGABYTE_OF_TEXT}),
}


@pytest.mark.parametrize("case", OVERSIZED)
async def test_a_megabyte_field_is_bad_params_not_a_row(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, case: str
) -> None:
    name, fields = OVERSIZED[case]
    door = DOORS[name]
    response = await client.post(door.path, json=door.body | fields, headers=headers(door, tenant))
    assert response.status_code == 400, response.text[:300]
    assert "at most" in door.message(response.json())
    assert await stored_events(runtime) == []


GRAPHQL_OVERSIZED = {
    "recordSearch-query": (
        "mutation($t: String!) { recordSearch(input: {query: $t}) { id } }",
        "query must be at most 1024 characters",
    ),
    "recordSearch-filter": (
        'mutation($t: String!) { recordSearch(input: {query: "q", '
        'appliedFilters: [{filter: "f", operator: "o", value: $t}]}) { id } }',
        "at most",
    ),
    "recordView-target-type": (
        f'mutation($t: String!) {{ recordView(input: {{targetId: "{ITEM}", targetType: $t}}) '
        "{ id } }",
        "targetType must be at most 64 characters",
    ),
    "recordClick-document": (
        "mutation($t: String!) { recordClick(input: {documentId: $t, rank: 0}) { id } }",
        "documentId must be at most 255 characters",
    ),
    "stats-timezone": (
        'query($t: String!) { stats(from: "2025-01-01", to: "2025-01-02", timezone: $t) '
        "{ searches { totalCount } } }",
        "unknown timezone",
    ),
    "stats-from": (
        'query($t: String!) { stats(from: $t, to: "2025-01-02") { searches { totalCount } } }',
        "from must be an ISO date",
    ),
    "stats-filter-query": (
        'query($t: String!) { stats(from: "2025-01-01", to: "2025-01-02", filter: {query: $t}) '
        "{ searches { totalCount } } }",
        "filter query must be 1 to 1024 characters",
    ),
    "stats-filter-index": (
        'query($t: String!) { stats(from: "2025-01-01", to: "2025-01-02", filter: {index: [$t]})'
        " { clicks { totalCount } } }",
        "index names must be 1 to 255 characters",
    ),
    "stats-engine": (
        'query($t: ID!) { stats(from: "2025-01-01", to: "2025-01-02", engines: [$t]) '
        "{ searches { totalCount } } }",
        "invalid hashid",
    ),
    "forgetUser": (
        "mutation($t: String!) { forgetUser(userId: $t) { deletedEvents } }",
        "userId must be 1 to 64 characters",
    ),
}


@pytest.mark.parametrize("case", GRAPHQL_OVERSIZED)
async def test_a_megabyte_graphql_argument_is_bad_params(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, case: str
) -> None:
    document, words = GRAPHQL_OVERSIZED[case]
    response = await client.post(
        "/graphql",
        json={"query": document, "variables": {"t": MEGABYTE_OF_TEXT}},
        headers=tenant.token,
    )
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "bad_params"
    assert words in error["message"]
    assert len(error["message"]) < 2000  # the megabyte is not echoed back
    assert await stored_events(runtime) == []


async def test_an_oversized_stats_parameter_is_bad_params(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    # As long as a URL may be (servers refuse longer request lines themselves).
    longest = "q" * 60_000
    for name in ("query", "dfid", "tz", "hashids[]", "indices[0][name]"):
        params = {"from": "20250101", "to": "20250102", name: longest}
        response = await client.get("/api/v2/stats/clicks", params=params, headers=tenant.token)
        assert response.status_code == 400, (name, response.text[:200])
        assert response.json()["error"]["code"] == "bad_params"
        assert len(response.text) < 2000


async def test_an_empty_event_id_is_bad_params(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    """Found by fuzzing: stored, an empty eventId made the next one a unique-key conflict (500)."""
    document = 'mutation { recordSearch(input: {query: "q", eventId: ""}) { id } }'
    for _ in range(2):
        response = await client.post("/graphql", json={"query": document}, headers=tenant.token)
        [error] = response.json()["errors"]
        assert (error["extensions"]["code"], error["message"]) == (
            "bad_params",
            "eventId must not be empty",
        )
    assert await stored_events(runtime) == []
