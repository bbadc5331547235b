"""The live dashboard in headless Chromium: events recorded through REST move its numbers, and
a subscription the server ends is shown and started again."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.errors import Unavailable
from app.services import live
from app.services.runtime import Runtime
from tests.conftest import BROWSER_UA, REQUIRE_POSTGRES, make_tenant
from tests.e2e.graphql_ws import eventually
from tests.e2e.live_support import gql, served_app
from tests.e2e.servers import ROOT, ServeProcess, searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"
ITEM = "43f9bb3e-f90d-458f-9858-7e4589481d18"
SEARCH_NOW = "mutation($text: String!) { recordSearch(input: {query: $text}) { id } }"


def _browser_or_skip() -> Any:
    """Playwright's API, driving Debian's Chromium; never a browser download of its own."""
    problem = None
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        problem = f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)"
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        problem = "Playwright for Python is not installed (pip install -e '.[dev]')"
    if problem:
        if REQUIRE_POSTGRES:  # CI: the browser test must run
            pytest.fail(problem + " and this run requires the browser test", pytrace=False)
        pytest.skip(problem)
    return async_playwright


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[ServeProcess, str]]:
    env = {
        "SEARCHSTATS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'dashboard.db'}",
        "SEARCHSTATS_SECRET_KEY": "dashboard-test",
        "SEARCHSTATS_BROKER_URL": "",
    }
    with searchstats_serve(env, tmp_path, name="dashboard") as served:
        bootstrap = served.bootstrap()
        assert bootstrap is not None, served.output()
        yield served, bootstrap[0]


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    async_playwright = _browser_or_skip()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1200, "height": 1100})
            yield await context.new_page()
        finally:
            await browser.close()


async def test_dashboard_numbers_move_live_as_events_arrive_through_rest(
    page: Any, service: tuple[ServeProcess, str]
) -> None:
    served, key = service
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    await page.goto(f"{served.base_url}/dashboard")
    await page.fill("#api-key", key)
    await page.click("#connect")
    await expect_text(page, "#status", "live")
    await expect_text(page, "#searches-total", "0")
    assert await page.evaluate("localStorage.getItem('searchstats.apiKey')") == key
    await page.evaluate("window.notReloaded = true")

    async with httpx.AsyncClient(
        base_url=served.base_url, trust_env=False, headers={"User-Agent": BROWSER_UA}
    ) as http:
        await record_through_every_door(http, key)

    await expect_text(page, "#searches-total", "2")
    await expect_text(page, "#clicks-total", "1")
    await expect_text(page, "#visits-total", "1")
    await expect_text(page, "#views-total", "1")
    await expect_text(page, "#ctr", "50.0 %")
    await expect_text(page, "#avg-position", "1.00")
    top = await page.locator("#top-queries tr").all_inner_texts()
    assert sorted(row.replace("\t", " ") for row in top) == ["open access 1", "thesis 1"]
    assert await page.evaluate("window.notReloaded") is True  # the same page, updated live
    assert await page.locator("#volume-chart canvas").count() == 1

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    # Everything the page loaded came from the service itself: no CDN.
    hosts = {urlsplit(url).netloc for url in requested}
    assert hosts == {f"127.0.0.1:{served.port}"}, hosts


async def test_a_refused_key_brings_the_form_back(
    page: Any, service: tuple[ServeProcess, str]
) -> None:
    served, _ = service
    await page.goto(f"{served.base_url}/dashboard/")
    await page.fill("#api-key", "0" * 40)
    await page.click("#connect")
    await expect_text(page, "#key-error", "This API key was refused.")
    assert await page.locator("#key-form").is_visible()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_subscription_the_server_ends_is_shown_and_started_again(
    page: Any, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await make_tenant(runtime, "default")
    async with served_app(runtime) as served:  # in this process: its feeds can be made to fail
        await page.goto(f"{served.http.base_url}/dashboard/")
        await page.fill("#api-key", tenant.api_key)
        await page.click("#connect")
        await expect_text(page, "#status", "live")

        async def database_down(**_: Any) -> Any:
            raise Unavailable()

        monkeypatch.setattr(live, "compute_stats", database_down)
        await gql(served, tenant, SEARCH_NOW, text="during the outage")
        # The feed's refresh failed: the server ended the subscription with `unavailable`.
        await page.wait_for_function(
            """() => {
                const status = document.querySelector("#status");
                return status.dataset.state === "error"
                    && status.textContent.startsWith("Service unavailable, retry later — retrying");
            }""",
            timeout=10_000,
        )
        monkeypatch.undo()
        await gql(served, tenant, SEARCH_NOW, text="after it")
        # Subscribed again on its own: live, with the numbers of now.
        await expect_text(page, "#status", "live")
        await expect_text(page, "#searches-total", "2")


# Every timer the page asks for is noted, and run at once: its reconnections go by fast.
NOTED_TIMERS = """
window.timerDelays = [];
const realSetTimeout = window.setTimeout;
window.setTimeout = (handler, delay, ...rest) => {
  window.timerDelays.push(delay || 0);
  return realSetTimeout(handler, 0, ...rest);
};
"""


async def test_reconnections_wait_at_most_the_capped_backoff(
    page: Any, service: tuple[ServeProcess, str]
) -> None:
    served, key = service
    attempts = 0

    def try_again_later(ws: Any) -> None:
        # What the service answers while its database is down: 1013 after connection_init.
        nonlocal attempts
        attempts += 1
        ws.on_message(lambda _: asyncio.ensure_future(ws.close(code=1013, reason="unavailable")))

    await page.add_init_script(NOTED_TIMERS)
    await page.route_web_socket(re.compile(r"/graphql$"), try_again_later)
    await page.goto(f"{served.base_url}/dashboard/")
    await page.fill("#api-key", key)
    await page.click("#connect")
    await eventually(lambda: attempts >= 16, within=10)
    delays: list[float] = await page.evaluate("window.timerDelays")
    # An outage of an hour would have the page wait for days before its next try (2^n s after
    # the n-th failure): the wait is capped, as after an ended subscription (30 s, plus jitter).
    assert max(delays) <= 30_500, sorted(delays)[-3:]


# The page's timers a hundred times faster: its keep-alive goes by in a fraction of a second.
FAST_TIMERS = """
const realSetTimeout = window.setTimeout;
window.setTimeout = (handler, delay, ...rest) =>
  realSetTimeout(handler, (delay || 0) / 100, ...rest);
"""


async def test_a_connection_gone_silent_is_dropped_and_made_again(
    page: Any, service: tuple[ServeProcess, str]
) -> None:
    served, key = service
    attempts = 0

    def acknowledged_then_silent(ws: Any) -> None:
        # A socket whose other end is gone without a word (a network that changed, a proxy that
        # dropped the flow): the connection was acknowledged, then nothing ever comes back.
        nonlocal attempts
        attempts += 1

        def answer(message: str | bytes) -> None:
            if json.loads(message)["type"] == "connection_init":
                ws.send(json.dumps({"type": "connection_ack"}))

        ws.on_message(answer)

    await page.add_init_script(FAST_TIMERS)
    await page.route_web_socket(re.compile(r"/graphql$"), acknowledged_then_silent)
    await page.goto(f"{served.base_url}/dashboard/")
    await page.fill("#api-key", key)
    await page.click("#connect")
    # Its ping unanswered, the page gives the socket up and connects again (it showed "live"
    # with frozen numbers for as long as the tab stayed open).
    await page.wait_for_function(
        "() => document.querySelector('#status').textContent === 'reconnecting…'", timeout=10_000
    )
    await eventually(lambda: attempts >= 2)


async def record_through_every_door(http: httpx.AsyncClient, key: str) -> None:
    token = {"Authorization": f"Token {key}"}
    # DSpace 7 (anonymous: the first engine, the bootstrap account's): a search and a view.
    search = {
        "query": "open access",
        "page": {"size": 10, "totalElements": 3, "totalPages": 1, "number": 0},
        "sort": {"by": "score", "order": "desc"},
    }
    response = await http.post("/api/statistics/searchevents", json=search)
    assert response.status_code == 201, response.text
    view = {"targetId": ITEM, "targetType": "item"}
    response = await http.post("/api/statistics/viewevents", json=view)
    assert response.status_code == 201, response.text
    # A GraphQL search gives the queryId a Workplace Search click links itself to.
    response = await http.post(
        "/graphql",
        json={"query": 'mutation { recordSearch(input: {query: "thesis"}) { queryId } }'},
        headers=token,
    )
    query_id = response.json()["data"]["recordSearch"]["queryId"]
    click = {
        "type": "click",
        "query_id": query_id,
        "page": 1,
        "content_source_id": "repository",
        "document_id": "doc-7",
        "rank": 0,
        "event": "web",
    }
    response = await http.post("/api/ws/v1/analytics/event", json=click, headers=token)
    assert response.status_code == 200, response.text
    # Doofinder: a visit.
    response = await http.post("/api/v2/stats/visit", json={"store": "main"}, headers=token)
    assert response.status_code == 200, response.text


async def expect_text(page: Any, selector: str, text: str) -> None:
    """Wait (bounded) until the element shows exactly this text."""
    await page.wait_for_function(
        "([selector, text]) => document.querySelector(selector)?.textContent.trim() === text",
        arg=[selector, text],
        timeout=10_000,
    )
