"""The GraphQL ``stats`` query: exact local buckets, rates and breakdowns on both databases."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from app.domain.periods import OUT_OF_RANGE
from app.domain.stats import Breakdown, Metric, Rate
from app.services.stats import compute_stats
from graphql_schema import queries
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


TOP_FIELDS = {"topQueries": "query", "topNoResultQueries": "query", "topDocuments": "documentId"}


async def ask(client: httpx.AsyncClient, tenant: Tenant, query: str, **variables: Any) -> Any:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=tenant.token
    )
    return response.json()


async def seed_tops(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, list[dict[str, Any]]]:
    """Fifteen texts searched (without results) and clicked 1 to 4 times each; the tops."""
    texts = [f"t{i:02}" for i in range(15) for _ in range(i % 4 + 1)]
    at = "2025-04-01T10:00:00Z"
    searches = [{"search": {"query": t, "resultCount": 0, "occurredAt": at}} for t in texts]
    clicks = [{"click": {"documentId": t, "rank": 0, "occurredAt": at}} for t in texts]
    await post(client, tenant, RECORD, input=searches + clicks)
    ranked = sorted(Counter(texts).items(), key=lambda item: (-item[1], item[0]))
    return {
        field: [{key: text, "count": count} for text, count in ranked]
        for field, key in TOP_FIELDS.items()
    }


def top(field: str, limit: object) -> str:
    return f"{field}(limit: {limit}) {{ {TOP_FIELDS[field]} count }}"


def stats_document(selection: str, variables: str = "", fragments: str = "") -> str:
    period = 'from: "2025-04-01", to: "2025-04-01"'
    return f"query{variables} {{ stats({period}) {{ {selection} }} }} {fragments}"


def limit_forms(field: str, limit: int) -> dict[str, tuple[str, dict[str, Any]]]:
    """The same limit written as a literal, a variable, a variable's default, in fragments."""
    return {
        "literal": (stats_document(top(field, limit)), {}),
        "variable": (stats_document(top(field, "$n"), "($n: Int!)"), {"n": limit}),
        "default": (stats_document(top(field, "$n"), f"($n: Int = {limit})"), {}),
        "inline": (stats_document(f"... on Stats {{ {top(field, limit)} }}"), {}),
        "fragment": (
            stats_document("...F", fragments=f"fragment F on Stats {{ {top(field, limit)} }}"),
            {},
        ),
    }


@pytest.mark.parametrize("limit", [1, 12, 1000])
@pytest.mark.parametrize("field", list(TOP_FIELDS))
async def test_a_literal_limit_answers_as_a_variable_does(
    client: httpx.AsyncClient, tenant: Tenant, field: str, limit: int
) -> None:
    expected = (await seed_tops(client, tenant))[field][:limit]
    for form, (document, variables) in limit_forms(field, limit).items():
        data = await post(client, tenant, document, **variables)
        assert data["stats"][field] == expected, form


@pytest.mark.parametrize("limit", [0, -1, 1001])
@pytest.mark.parametrize("field", list(TOP_FIELDS))
async def test_a_limit_out_of_bounds_is_bad_params_however_written(
    client: httpx.AsyncClient, tenant: Tenant, field: str, limit: int
) -> None:
    for form, (document, variables) in limit_forms(field, limit).items():
        errors = (await ask(client, tenant, document, **variables))["errors"]
        assert [(e["extensions"]["code"], e["message"]) for e in errors] == [
            ("bad_params", "limit must be between 1 and 1000")
        ], form


async def test_aliases_each_get_their_own_limit_and_each_is_checked(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    expected = (await seed_tops(client, tenant))["topQueries"]
    both = stats_document(f"a: {top('topQueries', 2)} b: {top('topQueries', 12)}")
    data = await post(client, tenant, both)
    assert (data["stats"]["a"], data["stats"]["b"]) == (expected[:2], expected[:12])
    one_bad = stats_document(f"a: {top('topQueries', 0)} b: {top('topQueries', 5)}")
    errors = (await ask(client, tenant, one_bad))["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["bad_params"]


BAD_TOP = "topQueries(limit: 1001) {directive} { query count }"
SKIPPED_FORMS: dict[str, tuple[str, dict[str, Any]]] = {
    "skip": (BAD_TOP.replace("{directive}", "@skip(if: true)"), {}),
    "include": (BAD_TOP.replace("{directive}", "@include(if: false)"), {}),
    "skip by variable": (BAD_TOP.replace("{directive}", "@skip(if: $s)"), {"s": True}),
    "include by variable": (BAD_TOP.replace("{directive}", "@include(if: $s)"), {"s": False}),
    "inline fragment": ("... on Stats @skip(if: true) { " + top("topQueries", 1001) + " }", {}),
    "fragment spread": ("...F @include(if: false)", {}),
}


@pytest.mark.parametrize("form", list(SKIPPED_FORMS))
async def test_a_skipped_breakdown_is_neither_checked_nor_answered(
    client: httpx.AsyncClient, tenant: Tenant, form: str
) -> None:
    expected = (await seed_tops(client, tenant))["topQueries"]
    skipped, variables = SKIPPED_FORMS[form]
    document = stats_document(
        f"{skipped} kept: {top('topQueries', 3)}",
        "($s: Boolean!)" if variables else "",
        fragments=f"fragment F on Stats {{ {top('topQueries', 1001)} }}" if "F" in skipped else "",
    )
    data = await post(client, tenant, document, **variables)
    assert data["stats"] == {"kept": expected[:3]}


async def test_skipped_metrics_are_not_computed(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[Any] = []

    async def spy(**kwargs: Any) -> Any:
        asked.append(kwargs["query"])
        return await compute_stats(**kwargs)

    monkeypatch.setattr(queries, "compute_stats", spy)
    document = stats_document(
        "views { total } clicks @skip(if: $s) { total } "
        "clickThroughRate @include(if: $s) { overall } "
        "... on Stats @include(if: $s) { topDocuments(limit: 2) { documentId } }",
        "($s: Boolean!)",
    )
    await post(client, tenant, document, s=False)
    await post(client, tenant, document, s=True)
    assert [(q.metrics, q.rates, q.breakdowns) for q in asked] == [
        (frozenset({Metric.VIEWS, Metric.CLICKS}), frozenset(), ()),
        (
            frozenset({Metric.VIEWS}),
            frozenset({Rate.CLICK_THROUGH_RATE}),
            ((Breakdown.TOP_DOCUMENTS, 2),),
        ),
    ]


async def test_an_empty_engine_list_is_bad_params_not_every_engine(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    period = 'from: "2025-04-01", to: "2025-04-01"'
    document = f"query($e: [ID!]) {{ stats({period}, engines: $e) {{ views {{ totalCount }} }} }}"
    refused = (await ask(client, tenant, document, e=[]))["errors"]
    assert [e["extensions"]["code"] for e in refused] == ["bad_params"]
    assert "at least one engine" in refused[0]["message"]
    every = await ask(client, tenant, document, e=None)  # left out: all the caller's engines
    assert every["data"]["stats"] == {"views": {"totalCount": 0}}


SEARCHED_AROUND_10_15 = [
    "2025-06-01T00:00:00Z",
    "2025-06-01T00:00:00.000001Z",
    "2025-06-01T10:14:59.999999Z",
    "2025-06-01T10:15:00Z",
    "2025-06-01T10:15:00.122999Z",
    "2025-06-01T10:15:00.123Z",
    "2025-06-01T10:15:00.5Z",
    "2025-06-01T10:30:00Z",
    "2025-06-01T23:59:59.999999Z",
]


def instant(bound: str, *, end: bool) -> datetime:
    """A bound as the test reads it: a date is its UTC midnight (the day after, for ``to``)."""
    if len(bound) == 10:
        day = datetime.fromisoformat(bound).replace(tzinfo=UTC)
        return day + timedelta(days=1) if end else day
    return datetime.fromisoformat(bound)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2025-06-01", "2025-06-01T10:15:00.123Z"),  # JavaScript's toISOString()
        ("2025-06-01", "2025-06-01T10:15:01.123Z"),
        ("2025-06-01T00:00:00.000001Z", "2025-06-01"),
        ("2025-06-01T10:15:00.123Z", "2025-06-01T10:30:00Z"),
        ("2025-06-01T10:14:59.999999Z", "2025-06-01T10:15:00.123001Z"),
    ],
)
async def test_bounds_with_a_fraction_of_a_second(
    client: httpx.AsyncClient, tenant: Tenant, start: str, end: str
) -> None:
    await searches_at(client, tenant, *SEARCHED_AROUND_10_15)
    lo, hi = instant(start, end=False), instant(end, end=True)
    inside = [t for t in map(datetime.fromisoformat, SEARCHED_AROUND_10_15) if lo <= t < hi]
    hours = Counter(t.replace(minute=0, second=0, microsecond=0) for t in inside)
    for granularity in ("DAY", "HOUR"):
        data = await post(
            client, tenant, COUNTS, **{"from": start, "to": end}, tz="Etc/UTC", g=granularity
        )
        searches = data["stats"]["searches"]
        assert searches["totalCount"] == len(inside), granularity
        if granularity == "HOUR":
            found = {datetime.fromisoformat(p["start"]): p["count"] for p in searches["points"]}
            assert {t: n for t, n in found.items() if n} == hours


@pytest.mark.parametrize(
    "zone", ["Etc/UTC", "Europe/Madrid", "Pacific/Kiritimati", "America/New_York", "Asia/Kolkata"]
)
async def test_periods_lie_between_2000_and_2100_in_their_timezone(
    client: httpx.AsyncClient, tenant: Tenant, zone: str
) -> None:
    first_instant = "2000-01-01T00:00:00Z"  # the earliest an event may have happened
    await searches_at(client, tenant, first_instant)
    local_day = datetime.fromisoformat(first_instant).astimezone(ZoneInfo(zone)).date()

    async def days(start: str, end: str) -> Any:
        return await ask(client, tenant, COUNTS, **{"from": start, "to": end}, tz=zone, g="DAY")

    first = (await days("2000-01-01", "2000-01-02"))["data"]["stats"]["searches"]["points"]
    assert [(p["start"][:10], p["count"]) for p in first] == [
        (day, int(day == local_day.isoformat())) for day in ("2000-01-01", "2000-01-02")
    ]
    last = (await days("2099-12-30", "2099-12-31"))["data"]["stats"]["searches"]
    assert (last["total"], last["totalCount"]) == (2, 0)
    for start, end in (("1999-12-31", "2000-01-01"), ("2099-12-31", "2100-01-01")):
        errors = (await days(start, end))["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["bad_params"], (start, end)
    # A date-time is read in the timezone too: half an hour before 2000 in UTC is 2000 east of it.
    start = "1999-12-31T23:30:00Z"
    early = await days(start, "2000-01-01T01:00:00Z")
    in_2000 = datetime.fromisoformat(start).astimezone(ZoneInfo(zone)).year == 2000
    assert ("errors" not in early) == in_2000, early


@pytest.mark.parametrize(
    ("start", "end", "arguments"),
    [
        ("9999-12-31", "9999-12-31", ""),
        ("2025-12-05", "9999-12-31", "granularity: MONTH"),
        ("9999-12-31", "9999-12-31", 'timezone: "Pacific/Kiritimati"'),
        ("9999-12-31T00:00:00+00:00", "9999-12-31T23:59:59-14:00", ""),
        ("9999-12-31T00:00:00", "9999-12-31T23:00:00", 'timezone: "Etc/GMT+12"'),
        ("0001-01-01", "0001-01-02", ""),
        ("0001-01-01T00:00:00+14:00", "2025-01-01", "granularity: MONTH"),
    ],
)
@pytest.mark.parametrize("credential", ["token", "anonymous"])
async def test_a_period_at_the_calendars_ends_is_bad_params_and_logs_no_error(
    client: httpx.AsyncClient,
    tenant: Tenant,
    caplog: pytest.LogCaptureFixture,
    start: str,
    end: str,
    arguments: str,
    credential: str,
) -> None:
    """Years 9999 and 1 overflowed the date arithmetic: internal_error, logged as the server's
    own fault. They are the client's mistake, told as any period outside the range is (and,
    without a credential, never reached: the credential is checked first)."""
    document = f'{{ stats(from: "{start}", to: "{end}" {arguments}) {{ clicks {{ total }} }} }}'
    headers = tenant.token if credential == "token" else {}
    with caplog.at_level(logging.WARNING):
        response = await client.post("/graphql", json={"query": document}, headers=headers)
    [error] = response.json()["errors"]
    if credential == "token":
        assert (error["extensions"]["code"], error["message"]) == ("bad_params", OUT_OF_RANGE)
    else:
        assert error["extensions"]["code"] == "not_authenticated"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize(
    ("filter_field", "named"),
    [("index", "at least one index"), ("productType", "at least one product type")],
)
async def test_an_empty_filter_list_is_bad_params_not_no_filter(
    client: httpx.AsyncClient, tenant: Tenant, filter_field: str, named: str
) -> None:
    """An empty list names nothing to count, as ``engines: []`` does: refused, not read as no
    filter at all (a dashboard with no index ticked counted every click)."""
    question = f'from: "2025-04-01", to: "2025-04-01", filter: {{{filter_field}: []}}'
    document = f"{{ stats({question}) {{ clicks {{ totalCount }} }} }}"
    refused = (await ask(client, tenant, document))["errors"]
    assert [e["extensions"]["code"] for e in refused] == ["bad_params"]
    assert named in refused[0]["message"]
