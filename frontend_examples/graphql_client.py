"""A GraphQL client for searchstats: a query, mutations, then a live subscription.

    SEARCHSTATS_API_KEY=<key> python frontend_examples/graphql_client.py [--url http://127.0.0.1:8000]

Needs httpx and websockets: websockets comes with searchstats, httpx with its development install
(pip install -e '.[dev]') or on its own (pip install httpx). It records a search and a click on
its result, reads the day's stats, then subscribes to ``eventRecorded`` and ``liveStats`` over
the graphql-transport-ws protocol, records one more search and prints what the subscriptions
push.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

RECORD_SEARCH = """
mutation($text: String!) { recordSearch(input: {query: $text, resultCount: 12}) { id queryId } }
"""
RECORD_CLICK = """
mutation($queryId: String!) {
  recordClick(input: {queryId: $queryId, documentId: "doc-42", rank: 0}) { id status }
}"""
STATS = """
query($day: String!) {
  engines { hashid name isDefault }
  stats(from: $day, to: $day, granularity: HOUR, filter: {includeBots: true}) {
    searches { totalCount }
    clicks { totalCount }
    clickThroughRate { overall }
    topQueries(limit: 5) { query count }
  }
}"""
# includeBots also counts robots' events, which stats leave out by default. This script's own
# events count either way: recorded with a key through an HTTP library, they are not a robot's
# (docs/graphql.md).
EVENTS = "subscription { eventRecorded { id type query occurredAt } }"
LIVE = """
subscription($day: String!) {
  liveStats(from: $day, to: $day, intervalMs: 500, filter: {includeBots: true}) {
    searches { totalCount }
  }
}"""


def graphql(http: httpx.Client, document: str, **variables: Any) -> Any:
    """POST one operation; raise on GraphQL errors (each carries extensions.code)."""
    body = http.post("/graphql", json={"query": document, "variables": variables}).json()
    if "errors" in body:
        raise RuntimeError(json.dumps(body["errors"]))
    return body["data"]


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] == "ping":  # graphql-transport-ws keep-alive
            await send(ws, {"type": "pong"})
            continue
        return message


async def subscribe_and_watch(url: str, key: str, http: httpx.Client, day: str) -> None:
    ws_url = url.replace("http", "ws", 1) + "/graphql"
    async with connect(
        ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], proxy=None
    ) as ws:
        # The credential travels in connection_init; a bad one closes the socket with 4403.
        await send(ws, {"type": "connection_init", "payload": {"Authorization": f"Token {key}"}})
        assert (await receive(ws))["type"] == "connection_ack"
        await send(ws, {"id": "events", "type": "subscribe", "payload": {"query": EVENTS}})
        live = {"query": LIVE, "variables": {"day": day}}
        await send(ws, {"id": "live", "type": "subscribe", "payload": live})
        first = await receive(ws)  # liveStats answers at once
        print("liveStats now:", first["payload"]["data"]["liveStats"])
        graphql(http, RECORD_SEARCH, text="live example")
        seen: set[str] = set()
        while seen != {"events", "live"}:
            message = await receive(ws)
            if message["type"] != "next":
                raise RuntimeError(json.dumps(message))
            print(f"{message['id']}:", json.dumps(message["payload"]["data"]))
            seen.add(message["id"])
        for op_id in ("events", "live"):
            await send(ws, {"id": op_id, "type": "complete"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=os.environ.get("SEARCHSTATS_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--key", default=os.environ.get("SEARCHSTATS_API_KEY"))
    args = parser.parse_args()
    if not args.key:
        parser.error("pass --key or set SEARCHSTATS_API_KEY")
    day = datetime.now(UTC).date().isoformat()
    headers = {"Authorization": f"Token {args.key}"}
    with httpx.Client(base_url=args.url, headers=headers, trust_env=False) as http:
        searched = graphql(http, RECORD_SEARCH, text="running shoes")["recordSearch"]
        print("recorded search", searched)
        clicked = graphql(http, RECORD_CLICK, queryId=searched["queryId"])["recordClick"]
        print("recorded click", clicked)
        print("stats:", json.dumps(graphql(http, STATS, day=day), indent=2))
        asyncio.run(subscribe_and_watch(args.url, args.key, http, day))


if __name__ == "__main__":
    main()
