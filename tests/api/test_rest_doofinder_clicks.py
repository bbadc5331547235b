"""``GET /api/v2/stats/clicks`` exactly as Doofinder documents it, and parity with GraphQL."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.domain.events import EventDraft, EventKind, ProductType
from app.services import accounts
from app.services.record import Client
from app.services.runtime import Runtime
from tests.api.helpers import CHALLENGE
from tests.conftest import Tenant
from tests.integration.stats_seed import click, search, seed

CLICKS = "/api/v2/stats/clicks"
MOBILE = Client(
    door="test",
    user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
)


def ms(day: date, offset_hours: int = 0) -> int:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(hours=offset_hours)
    return int(start.timestamp() * 1000)


async def get(client: httpx.AsyncClient, tenant: Tenant, **params: Any) -> httpx.Response:
    return await client.get(CLICKS, params=params, headers=tenant.token)


@pytest.fixture
async def clicks(runtime: Runtime, tenant: Tenant) -> None:
    """Clicks on 2025-03-02 (3) and 2025-03-04 (1); the first two follow a search for 'shoes'."""
    t = datetime(2025, 3, 2, 12, tzinfo=UTC)
    found = await seed(runtime, tenant, [search(t, "shoes")])
    await seed(
        runtime,
        tenant,
        [
            click(t, found[0].query_id, 0, document="doc-1"),
            click(t, found[0].query_id, 1, document="doc-2"),
            EventDraft(
                kind=EventKind.CLICK,
                occurred_at=t,
                document_id="doc-1",
                rank=3,
                content_source_id="products",
                product_type=ProductType.BANNER,
            ),
        ],
    )
    await seed(
        runtime, tenant, [click(datetime(2025, 3, 4, 8, tzinfo=UTC), None, 0)], client=MOBILE
    )


@pytest.mark.usefixtures("clicks")
async def test_days_are_zero_filled_and_totalled(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await get(client, tenant, **{"from": "20250301", "to": "20250305"})
    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {"count": 0, "timestamp": ms(date(2025, 3, 1))},
            {"count": 3, "timestamp": ms(date(2025, 3, 2))},
            {"count": 0, "timestamp": ms(date(2025, 3, 3))},
            {"count": 1, "timestamp": ms(date(2025, 3, 4))},
            {"count": 0, "timestamp": ms(date(2025, 3, 5))},
        ],
        "total": 5,
        "total_count": 4,
    }


@pytest.mark.usefixtures("clicks")
@pytest.mark.parametrize("unit", [1, 1000], ids=["seconds", "milliseconds"])
async def test_unix_timestamps(client: httpx.AsyncClient, tenant: Tenant, unit: int) -> None:
    start = int(datetime(2025, 3, 2, tzinfo=UTC).timestamp()) * unit
    end = int(datetime(2025, 3, 3, tzinfo=UTC).timestamp()) * unit
    body = (await get(client, tenant, **{"from": str(start), "to": str(end)})).json()
    assert body["results"] == [{"count": 3, "timestamp": ms(date(2025, 3, 2))}]


@pytest.mark.parametrize("past_noon_ms", [0, 1, 999])
@pytest.mark.usefixtures("clicks")
async def test_millisecond_timestamps_off_the_second(
    client: httpx.AsyncClient, tenant: Tenant, past_noon_ms: int
) -> None:
    # The fixture's three clicks of 2025-03-02 happened at 12:00:00 UTC, the day's only ones.
    noon = ms(date(2025, 3, 2)) + 12 * 3_600_000
    start, end = ms(date(2025, 3, 2)) + 1, noon + past_noon_ms
    response = await get(client, tenant, **{"from": str(start), "to": str(end)})
    assert response.status_code == 200, response.text
    assert response.json()["total_count"] == (3 if start <= noon < end else 0)


@pytest.mark.usefixtures("clicks")
async def test_days_follow_tz(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = (
        await get(client, tenant, **{"from": "20250302", "to": "20250302"}, tz="Asia/Tokyo")
    ).json()
    # 12:00 UTC is 21:00 in Tokyo, the same day; the day starts at 15:00 UTC the day before.
    assert body["results"] == [{"count": 3, "timestamp": ms(date(2025, 3, 2), offset_hours=9)}]


@pytest.mark.usefixtures("clicks")
@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"device": "mobile"}, 1),
        ({"device": "desktop"}, 3),
        ({"query": "shoes"}, 2),
        ({"dfid": "doc-1"}, 2),
        ({"indices[0][name]": "products"}, 1),
        ({"indices[1000][name]": "products"}, 1),  # the spec sets no bound on i
        ({"product_type[]": "banner"}, 1),
        ({"product_type": ["banner", "search"]}, 4),
        ({"product_type[0]": "banner"}, 1),  # PHP's http_build_query
    ],
)
async def test_filters(
    client: httpx.AsyncClient, tenant: Tenant, params: dict[str, Any], expected: int
) -> None:
    body = (await get(client, tenant, **{"from": "20250301", "to": "20250305"}, **params)).json()
    assert body["total_count"] == expected


@pytest.mark.parametrize(
    "name",
    # PHP's http_build_query numbers an array's items: hashids%5B0%5D=…, as httpx sends it here.
    ["hashids[]", "hashids", "hashid[]", "hashid", "hashids[0]", "hashid[0]", "hashids[1]"],
)
async def test_every_spelling_of_the_engine_parameter(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, name: str
) -> None:
    second = await accounts.create_engine(database=runtime.database, account=tenant.account)
    t = datetime(2025, 3, 2, 12, tzinfo=UTC)
    await seed(runtime, tenant, [click(t, None, 0)])
    on_second = EventDraft(
        kind=EventKind.CLICK, occurred_at=t, document_id="x", rank=0, engine=second.hashid
    )
    await seed(runtime, tenant, [on_second])
    everything = await get(client, tenant, **{"from": "20250302", "to": "20250302"})
    one = await get(client, tenant, **{"from": "20250302", "to": "20250302", name: second.hashid})
    assert everything.json()["total_count"] == 2
    assert one.json()["total_count"] == 1


async def test_aggregate_false_gives_one_series_per_engine(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    second = await accounts.create_engine(database=runtime.database, account=tenant.account)
    t = datetime(2025, 3, 2, 12, tzinfo=UTC)
    await seed(runtime, tenant, [click(t, None, 0)])
    response = await client.get(
        CLICKS,
        params=[
            ("from", "20250302"),
            ("to", "20250302"),
            ("aggregate", "false"),
            ("hashids[]", tenant.hashid),
            ("hashids[]", second.hashid),
        ],
        headers=tenant.token,
    )
    assert response.json() == {
        "results": [
            {
                "hashid": tenant.hashid,
                "results": [{"count": 1, "timestamp": ms(date(2025, 3, 2))}],
                "total": 1,
                "total_count": 1,
            },
            {
                "hashid": second.hashid,
                "results": [{"count": 0, "timestamp": ms(date(2025, 3, 2))}],
                "total": 1,
                "total_count": 0,
            },
        ],
        "total": 2,
        "total_count": 1,
    }


@pytest.mark.usefixtures("clicks")
async def test_csv_parses_back(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await get(client, tenant, **{"from": "20250301", "to": "20250303"}, format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert rows == [
        {"date": "2025-03-01", "timestamp": str(ms(date(2025, 3, 1))), "count": "0"},
        {"date": "2025-03-02", "timestamp": str(ms(date(2025, 3, 2))), "count": "3"},
        {"date": "2025-03-03", "timestamp": str(ms(date(2025, 3, 3))), "count": "0"},
    ]


@pytest.mark.parametrize(
    "params",
    [
        {"to": "20250301"},
        {"from": "20250301"},
        {"from": "20250231", "to": "20250301"},
        {"from": "2025-03-01", "to": "20250301"},
        {"from": "20250305", "to": "20250301"},
        {"from": "20250301", "to": "20250301", "tz": "Mars/Olympus_Mons"},
        {"from": "20250301", "to": "20250301", "device": "tablet"},
        {"from": "20250301", "to": "20250301", "format": "xml"},
        {"from": "20250301", "to": "20250301", "aggregate": "maybe"},
        {"from": "20250301", "to": "20250301", "hashids[]": "NOT-A-HASHID"},
        {"from": "20250301", "to": "20250301", "product_type[]": "coupon"},
        {"from": "20250301", "to": "20250301", "indices[0][hashid]": "a" * 32},
        {"from": "20250301", "to": "20250301", "indices[a][name]": "products"},
        {"from": "20250301", "to": "20250301", "indices[0][title]": "products"},
        {"from": "20250301", "to": "20250301", "indices": "products"},
        {"from": "20250301", "to": "20250301"} | {f"indices[{i}][name]": "x" for i in range(101)},
        {"from": "20000101", "to": "20991231"},
        {"from": "9999999998", "to": "9999999999"},
        {"from": "20250301", "to": "9999999999999"},
        {"from": "0000000000000", "to": "0000000000001"},
    ],
    ids=[
        "no-from",
        "no-to",
        "impossible-date",
        "iso-date",
        "from-after-to",
        "unknown-tz",
        "bad-device",
        "bad-format",
        "bad-aggregate",
        "malformed-hashid",
        "bad-product-type",
        "index-without-name",
        "index-not-numbered",
        "index-unknown-part",
        "indices-flat",
        "too-many-indices",
        "range-too-long",
        "seconds-in-2286",
        "milliseconds-in-2286",
        "milliseconds-in-1970",
    ],
)
async def test_bad_params(
    client: httpx.AsyncClient, tenant: Tenant, params: dict[str, str]
) -> None:
    response = await get(client, tenant, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "bad_params"
    assert body["error"]["message"]


@pytest.mark.parametrize("name", ["query", "dfid"])
async def test_a_filter_too_long_is_named_as_sent(
    client: httpx.AsyncClient, tenant: Tenant, name: str
) -> None:
    """It was named as GraphQL's filter field ("filter document"), which this door has not."""
    response = await get(client, tenant, **{"from": "20250301", "to": "20250302", name: "d" * 1025})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "bad_params",
        "message": f"{name} must be 1 to 1024 characters",
    }


async def test_engines_numbered_as_php_writes_them(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    second = await accounts.create_engine(database=runtime.database, account=tenant.account)
    await seed(runtime, tenant, [click(datetime(2025, 3, 2, 12, tzinfo=UTC), None, 0)])
    sent = [("from", "20250302"), ("to", "20250302"), ("aggregate", "false")]
    response = await client.get(
        CLICKS,
        params=[*sent, ("hashids[0]", second.hashid), ("hashids[1]", tenant.hashid)],
        headers=tenant.token,
    )
    assert [(r["hashid"], r["total_count"]) for r in response.json()["results"]] == [
        (second.hashid, 0),
        (tenant.hashid, 1),
    ]


@pytest.mark.parametrize(
    "key",
    ["hashids[a]", "hashids[0][x]", "hashid[x]", "hashids[", "hashids[ 0]", "product_type[a]"],
)
async def test_an_unreadable_engine_or_product_list_is_bad_params_not_ignored(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant, key: str
) -> None:
    """Ignored, such a parameter answered for every engine (every product type) of the account."""
    await seed(runtime, tenant, [click(datetime(2025, 3, 2, 12, tzinfo=UTC), None, 0)])
    value = "banner" if key.startswith("product_type") else tenant.hashid
    response = await get(client, tenant, **{"from": "20250302", "to": "20250302", key: value})
    assert response.status_code == 400
    name = key.partition("[")[0]
    message = f"{key} is not a list item: use {name}[]=value (or {name}[0]=value)"
    assert response.json() == {"error": {"code": "bad_params", "message": message}}


@pytest.mark.usefixtures("clicks")
async def test_a_parameter_spelled_in_another_case_is_unknown_and_ignored(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """As any unknown parameter: Doofinder's names are lowercase."""
    period = {"from": "20250301", "to": "20250305"}
    response = await get(client, tenant, **period, **{"HASHIDS[]": "0" * 32})
    assert response.status_code == 200
    assert response.json()["total_count"] == 4


async def test_not_authenticated(client: httpx.AsyncClient) -> None:
    response = await client.get(CLICKS, params={"from": "20250301", "to": "20250301"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == CHALLENGE


async def test_another_accounts_engine_is_forbidden(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = await get(
        client, tenant, **{"from": "20250301", "to": "20250301", "hashids[]": other_tenant.hashid}
    )
    assert response.status_code == 403
    assert response.json() == {
        "error": {"code": "access_denied", "message": response.json()["error"]["message"]}
    }


async def test_unknown_engine_is_not_found(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await get(
        client, tenant, **{"from": "20250301", "to": "20250301", "hashid": "0" * 32}
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_query_past_deadline_is_408(
    client: httpx.AsyncClient, runtime: Runtime, tenant: Tenant
) -> None:
    base = datetime(2024, 1, 1, tzinfo=UTC)
    await seed(
        runtime,
        tenant,
        [
            click(base + timedelta(minutes=9 * i), None, i % 20, document=f"d{i}")
            for i in range(1000)
        ],
    )
    object.__setattr__(
        runtime, "settings", runtime.settings.model_copy(update={"stats_timeout_seconds": 0.0005})
    )
    # Four years of days: planning and walking 1,461 buckets alone takes well over 0.5 ms.
    response = await get(client, tenant, **{"from": "20240101", "to": "20271231", "dfid": "d7"})
    assert response.status_code == 408
    assert response.json()["error"]["code"] == "timeout"


@pytest.mark.usefixtures("clicks")
async def test_rest_and_graphql_give_the_same_numbers(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    rest = (
        await get(
            client,
            tenant,
            **{"from": "20250301", "to": "20250305"},
            tz="Europe/Madrid",
            device="desktop",
            query="shoes",
        )
    ).json()
    graphql = await client.post(
        "/graphql",
        headers=tenant.token,
        json={
            "query": """
      { stats(from: "2025-03-01", to: "2025-03-05", timezone: "Europe/Madrid",
              filter: {device: DESKTOP, query: "shoes"}) {
          clicks { points { timestamp count } total totalCount } } }"""
        },
    )
    series = graphql.json()["data"]["stats"]["clicks"]
    assert rest["results"] == series["points"]
    assert (rest["total"], rest["total_count"]) == (series["total"], series["totalCount"])
    assert rest["total_count"] == 2
