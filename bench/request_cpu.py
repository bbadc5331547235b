"""CPU per request of the ASGI application itself, driven in-process without sockets.

    python -m bench.request_cpu [--door "REST visit"] [--requests 20000] [--clients 64] [--rounds 3]
                                [--access-log on|off|both]

The same request bodies as ``bench.ingest``, sent straight to the application's ASGI callable by
``--clients`` concurrent coroutines (no HTTP server, no sockets, no load generator sharing the
cores), against the bare Starlette endpoint of ``bench.references`` driven the same way. It prints
the process's CPU time per request (SQLite's own thread included) for each, alternating rounds and
keeping each one's best, and their ratio. This isolates what the application does per request from
the HTTP server's share, which ``bench.ingest`` measures with it; it is the loop to iterate with
when changing the request path. ``--access-log both`` measures the door with its access line
(the default) and without it (``SEARCHSTATS_ACCESS_LOG=false``), alternating with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import uvloop

from app.collector import settle_garbage_collector
from app.http.access_log import lean_log_records, log_config
from app.main import create_app
from app.services import accounts
from app.services.runtime import build_runtime
from app.settings import Settings
from app.storage.database import open_database
from app.storage.migrate import upgrade_to_head
from bench.ingest import BROWSER, DOORS, VISIT
from bench.references import reference_app

ASGIApp = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]


def scope_for(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"user-agent", BROWSER.encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def drive(
    app: ASGIApp, scope: dict[str, Any], body: bytes, requests: int, clients: int
) -> float:
    """CPU seconds per request for ``requests`` requests sent by ``clients`` coroutines."""
    statuses: list[int] = []
    remaining = requests

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if sent:
                    await asyncio.Event().wait()  # the client never hangs up
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app(dict(scope, headers=list(scope["headers"]), state={}), receive, send)

    started = time.process_time()
    await asyncio.gather(*(client() for _ in range(clients)))
    spent = time.process_time() - started
    bad = [s for s in statuses if s >= 300]
    if bad:
        raise RuntimeError(f"{len(bad)} requests failed, e.g. status {bad[0]}")
    return spent / requests


async def lifespan(app: ASGIApp) -> Callable[[], Awaitable[None]]:
    """Start ``app``'s lifespan; returns the function that ends it."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    started = asyncio.Event()
    inbox.put_nowait({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        if message["type"].startswith("lifespan.startup"):
            started.set()

    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    )
    await started.wait()

    async def shutdown() -> None:
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await task

    return shutdown


async def measure(
    door: str, requests: int, clients: int, rounds: int, access_log: str, directory: Path
) -> None:
    url = f"sqlite+aiosqlite:///{directory / 'searchstats.db'}"
    settings = Settings(
        database_url=url,
        secret_key="bench",
        secret_key_file=str(directory / "secret"),
        read_rate_limit="1000000/second",
        write_rate_limit="1000000/second",
    )
    database = open_database(settings, pooled=False)
    await upgrade_to_head(database)
    await database.dispose()
    runtime = build_runtime(settings)
    app = create_app(settings, runtime=runtime)
    quiet = create_app(settings.model_copy(update={"access_log": False}), runtime=runtime)
    settle_garbage_collector()  # as a server's worker does once its app is built
    ours_stop = await lifespan(app)
    created = await accounts.create_account(
        database=runtime.database, vault=runtime.vault, name="b"
    )
    await accounts.create_engine(database=runtime.database, account="b")
    _label, path, payload, scheme, _per = next(d for d in DOORS if d[0] == door)
    body = orjson.dumps(payload)
    ours = scope_for(path, body, [(b"authorization", f"{scheme} {created.api_key}".encode())])

    reference = reference_app(f"sqlite+aiosqlite:///{directory / 'reference.db'}")
    reference_stop = await lifespan(reference)
    bare_body = orjson.dumps(VISIT)
    bare = scope_for("/bare", bare_body, [])

    apps = {
        "on": [(door, app)],
        "off": [(f"{door}, access log off", quiet)],
        "both": [(door, app), (f"{door}, access log off", quiet)],
    }[access_log]
    for _label, served in apps:  # warm-up: caches, engines
        await drive(served, ours, body, min(requests, 2000), clients)
    await drive(reference, bare, bare_body, min(requests, 2000), clients)
    best_bare = float("inf")
    best = dict.fromkeys((label for label, _ in apps), float("inf"))
    for _ in range(rounds):
        best_bare = min(best_bare, await drive(reference, bare, bare_body, requests, clients))
        for label, served in apps:
            best[label] = min(best[label], await drive(served, ours, body, requests, clients))
    await ours_stop()
    await reference_stop()
    print(f"bare endpoint: {best_bare * 1e6:,.1f} µs CPU a request")
    for label, seconds in best.items():
        times = seconds / best_bare
        print(f"{label}: {seconds * 1e6:,.1f} µs CPU a request ({times:.1f} times bare)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--door", default=DOORS[0][0], choices=[d[0] for d in DOORS])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--access-log", choices=["on", "off", "both"], default="on")
    args = parser.parse_args()
    # Logged as the server logs (one JSON access line per request), into nothing.
    config = log_config(json=True)
    for handler in config["handlers"].values():
        handler["stream"] = open(os.devnull, "w")  # noqa: SIM115 - for the process's life
    logging.config.dictConfig(config)
    lean_log_records()
    with (
        tempfile.TemporaryDirectory(prefix="searchstats-cpu-") as directory,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        door, log = args.door, args.access_log
        runner.run(measure(door, args.requests, args.clients, args.rounds, log, Path(directory)))


if __name__ == "__main__":
    main()
