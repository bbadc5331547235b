"""``searchstats serve`` as deployed: its log names no client address nor User-Agent (uvicorn's
access log is replaced), a chunked body over the cap is a 413 over a real socket, and uvicorn
refuses a websocket message over the cap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from app.auth.addresses import ClientAddresses
from tests.e2e.servers import ServeProcess, searchstats_serve

pytestmark = pytest.mark.e2e

CLIENT_ADDRESS = "127.0.0.7"  # the client's own loopback address, distinct from the server's
PROBE_UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0 ServeProbe/4.5.6-unique"
CAP = 64 * 1024
VIEW = {"targetId": "43f9bb3e-f90d-458f-9858-7e4589481d18", "targetType": "item"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir: Path = tmp_path_factory.mktemp("serve-limits")
    env = {
        "SEARCHSTATS_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'serve.db'}",
        "SEARCHSTATS_SECRET_KEY": "serve-secret",
        "SEARCHSTATS_MAX_BODY_BYTES": str(CAP),
        "SEARCHSTATS_SQLITE_SYNCHRONOUS": "NORMAL",
    }
    with searchstats_serve(env, workdir, name="limits") as served:
        yield served


@pytest.fixture
async def http(server: ServeProcess) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.AsyncHTTPTransport(local_address=CLIENT_ADDRESS)
    async with httpx.AsyncClient(
        transport=transport,
        base_url=server.base_url,
        headers={"User-Agent": PROBE_UA},
        trust_env=False,
        timeout=10,
    ) as client:
        yield client


def token(server: ServeProcess) -> dict[str, str]:
    created = server.bootstrap()
    assert created is not None, server.output()
    return {"Authorization": f"Token {created[0]}"}


async def test_a_chunked_body_over_the_cap_is_refused_over_a_real_socket(
    http: httpx.AsyncClient,
) -> None:
    async def nine_megabytes() -> AsyncIterator[bytes]:
        yield b'{"targetType": "'
        for _ in range(9 * 16):
            yield b"x" * (64 * 1024)
        yield b'"}'

    response = await http.post(
        "/api/statistics/viewevents",
        content=nine_megabytes(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["message"] == f"the request body is over {CAP} bytes"


async def test_uvicorn_refuses_a_websocket_message_over_the_cap(server: ServeProcess) -> None:
    async with connect(
        server.ws_url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        proxy=None,
        max_size=None,
        local_addr=(CLIENT_ADDRESS, 0),
        user_agent_header=PROBE_UA,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": token(server)}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"q": "x" * CAP}}))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_the_log_names_no_client_address_nor_user_agent(
    server: ServeProcess, http: httpx.AsyncClient
) -> None:
    credential = token(server)
    assert (await http.post("/api/statistics/viewevents", json=VIEW)).status_code == 201
    assert (await http.post("/api/statistics/viewevents", json={})).status_code == 400
    visit = await http.post("/api/v2/stats/visit", json={"store": "s"}, headers=credential)
    assert visit.status_code == 200
    query = {"query": "{ engines { hashid } }"}
    assert (await http.post("/graphql", json=query, headers=credential)).status_code == 200
    assert (await http.get("/healthz?user=alice")).status_code == 200
    async with connect(
        server.ws_url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        proxy=None,
        local_addr=(CLIENT_ADDRESS, 0),
        user_agent_header=PROBE_UA,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": credential}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
    await asyncio.sleep(0.3)  # the websocket's access line is written when it closes
    log = server.output()
    for line in ("POST /api/statistics/viewevents 201", "POST /graphql 200", "/healthz 200"):
        assert line in log, log
    assert CLIENT_ADDRESS not in log
    # The server did see the address: its pseudonym (keyed with the server's secret) is logged.
    pseudonym = ClientAddresses(trusted_proxies=[], secret="serve-secret").pseudonym(CLIENT_ADDRESS)
    assert pseudonym in log
    assert "ServeProbe" not in log
    assert "alice" not in log  # query strings are not logged either
