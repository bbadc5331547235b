"""Requests no route takes: 404 for an unknown path, 405 for a method the path does not answer,
each in the error format of the dialect whose paths it is under."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message

from app.main import create_app
from app.services.runtime import Runtime

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # no storage is touched
NOTHING = "there is nothing at this path"


@pytest.mark.parametrize(
    "path", ["/api/v2/stats/searches", "/api/v2/stats/visit/extra", "/no/such/path"]
)
async def test_an_unknown_path_is_not_found_in_the_doofinder_and_service_format(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json() == {
        "error": {"code": "not_found", "message": "there is nothing at this path"}
    }


async def test_an_unknown_workplace_path_lists_its_error(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/ws/v1/analytics/events", json={})
    assert response.status_code == 404
    assert response.json() == {"errors": ["there is nothing at this path"]}


async def test_an_unknown_dspace_path_answers_as_spring_does(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/statistics/clickevents", json={})
    assert response.status_code == 404
    body = response.json()
    assert datetime.now(UTC) - datetime.fromisoformat(body.pop("timestamp")) < timedelta(minutes=1)
    assert body == {
        "status": 404,
        "error": "Not Found",
        "message": "there is nothing at this path",
        "path": "/api/statistics/clickevents",
    }


async def test_a_wrong_method_names_the_methods_allowed(client: httpx.AsyncClient) -> None:
    doofinder = await client.get("/api/v2/stats/visit")
    assert doofinder.status_code == 405
    assert doofinder.headers["allow"] == "POST"
    assert doofinder.json() == {
        "error": {
            "code": "bad_params",
            "message": "GET is not allowed here; this path answers POST",
        }
    }

    workplace = await client.put("/api/ws/v1/analytics/event", json={})
    assert workplace.status_code == 405
    assert workplace.headers["allow"] == "POST"
    assert workplace.json() == {"errors": ["PUT is not allowed here; this path answers POST"]}

    dspace = await client.get("/api/statistics/collect")
    assert dspace.status_code == 405
    assert dspace.headers["allow"] == "POST"
    body = dspace.json()
    assert (body["status"], body["error"]) == (405, "Method Not Allowed")
    assert body["path"] == "/api/statistics/collect"

    probe = await client.delete("/healthz")
    assert probe.status_code == 405
    assert set(probe.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert probe.json()["error"]["code"] == "bad_params"


async def test_an_unrouted_answer_keeps_the_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v2/stats/nothing", headers={"X-Request-ID": "probe-1"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "probe-1"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/v2/stats/visit/", 401),
        ("GET", "/api/v2/stats/clicks/", 401),
        ("POST", "/api/ws/v1/analytics/event/", 401),
        ("POST", "/api/statistics/collect/", 400),
        ("POST", "/api/statistics/viewevents/", 400),
        ("GET", "/api/statistics/", 200),
    ],
)
async def test_a_vendor_path_with_a_trailing_slash_is_answered_as_that_path(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    """As the vendors' own servers route it (Phoenix, Rails, Spring 5 ignore the slash). A
    redirect instead went to an absolute URL made of the scheme and Host this server saw: behind
    a proxy, its internal address, and a plain http one behind a TLS proxy."""
    response = await client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status, response.headers
    if path.startswith("/api/v2/"):
        assert response.json()["error"]["code"] == "not_authenticated"
    elif path.startswith("/api/ws/"):
        assert response.json() == {"errors": ["Authentication required"]}
    elif method == "POST":
        assert response.json()["path"] == path


async def test_a_wrong_method_on_a_path_with_a_trailing_slash_names_the_methods_allowed(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/ws/v1/analytics/event/")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"errors": ["GET is not allowed here; this path answers POST"]}


async def asgi_answer(app: ASGIApp, method: str, path: str, query_string: bytes) -> tuple[int, Any]:
    """The status and JSON body of one request sent to ``app`` as a server hands it over: the
    query string as the bytes the client sent (httpx would percent-encode them)."""
    pending: list[Message] = [{"type": "http.request", "body": b"{}", "more_body": False}]
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return sent[0]["status"], json.loads(body)


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/api/statistics/collect", 400, "type is required"),
        ("GET", "/api/statistics/collect", 405, "GET is not allowed here; this path answers POST"),
        ("GET", "/api/statistics/clickevents", 404, "there is nothing at this path"),
    ],
)
async def test_a_dspace_error_names_its_path_whatever_bytes_the_query_string_holds(
    runtime: Runtime, method: str, path: str, status: int, message: str
) -> None:
    """Servers that take a request target as sent (the HTTP crate's, Twisted's) hand over a query
    string that is no UTF-8. The error was a 500 in no dialect's format: the path was read through
    Starlette's URL, which decodes the query string too."""
    app = create_app(runtime.settings, runtime=runtime)
    answered, body = await asgi_answer(app, method, path, b"page=\xff")
    assert answered == status
    assert (body["status"], body["message"], body["path"]) == (status, message, path)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v2/stats/nothing", {"error": {"code": "not_found", "message": NOTHING}}),
        ("/api/ws/v1/nothing", {"errors": [NOTHING]}),
    ],
)
async def test_an_unknown_path_is_not_found_whatever_bytes_the_query_string_holds(
    runtime: Runtime, path: str, body: dict[str, Any]
) -> None:
    app = create_app(runtime.settings, runtime=runtime)
    assert await asgi_answer(app, "GET", path, b"q=\xff") == (404, body)
