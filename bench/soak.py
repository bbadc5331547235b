"""Long, varied traffic: does what a worker holds keep growing with what clients send?

    python -m bench.soak [--minutes 10] [--backends sqlite,postgresql] [--connections 16]
                         [--sample-seconds 10] [--seed 1] [--no-write]

Every cache and table a worker keys by what clients send (credentials, GraphQL documents, user
agents, sessions, queries, subscriptions) must stay bounded however long it serves; a fixed
request replayed by wrk never shows one that does not. Here a real ``searchstats serve`` (one
worker, on a fresh database) takes --minutes of traffic in which nearly every request differs
from the last: every door (Doofinder visits and clicks, Workplace events, DSpace's anonymous view
and search events, GraphQL searches with their clicks, 20-event batches, stats questions by
period, time zone and filter), a new JWT for most GraphQL requests, a new User-Agent, session and
user for most events, GraphQL documents that differ by an alias, some refused requests (unknown
key, malformed JSON, unknown path), and websocket subscribers (``liveStats`` and
``eventRecorded``, on either protocol) that come and go all along, some closing cleanly, some
dropping their connection.

Every --sample-seconds it reads the worker's resident memory, open file descriptors and threads.
The trend is the least-squares slope of memory against requests over the second half of the run
(the first fills the bounded caches, whose keys this traffic keeps new), per 100,000 requests,
with twice its standard error: a sample moves by several MB either way as the allocator goes. At
the end the database must hold exactly the events acknowledged. The figures replace the ``soak``
section of docs/performance.md, with a plot of memory against requests (unless --no-write).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import matplotlib
import orjson

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt

from bench.common import Server, fresh_database, searchstats_server, stop, write_section
from bench.ingest import stored_events
from bench.plots import COLOURS, IMG

WARM_UP_SHARE = 0.5  # the first half fills the bounded caches (see EXPLAINED)
BATCH = 20  # events of a recordEvents request
ZONES = ("Etc/UTC", "Europe/Madrid", "America/St_Johns", "Asia/Kathmandu", "Pacific/Chatham")
WORDS = ("red", "shoes", "open", "access", "thesis", "blue", "coat", "report", "data", "map")
SEARCH = (
    "mutation($i: SearchInput!) { s%d: recordSearch(input: $i) { id queryId } }"  # an alias each
)
CLICK = "mutation($i: ClickInput!) { recordClick(input: $i) { id } }"
EVENTS = "mutation($i: [EventInput!]!) { recordEvents(input: $i) { id } }"
STATS = """query($from: String!, $to: String!, $tz: String!, $f: StatsFilterInput) {
  stats(from: $from, to: $to, timezone: $tz, filter: $f) {
    searches { totalCount } clicks { points { start count } }
    clickThroughRate { overall } topQueries(limit: 5) { query count }
  }
}"""
LIVE = """subscription($from: String!, $to: String!) {
  liveStats(from: $from, to: $to) { visits { totalCount } }
}"""
RECORDED = "subscription { eventRecorded { id type } }"
# Each websocket protocol's messages: (start an operation, its result, stop it).
PROTOCOLS = {
    "graphql-transport-ws": ("subscribe", "next", "complete"),
    "graphql-ws": ("start", "data", "stop"),
}


@dataclass
class Sample:
    seconds: float
    requests: int
    rss_mb: float
    fds: int
    threads: int


@dataclass
class Tally:
    requests: int = 0
    events: int = 0  # acknowledged as stored
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    subscriptions: int = 0
    dropped: int = 0  # subscribers that went without closing
    unexpected: list[str] = field(default_factory=list)


class Traffic:
    """Requests that differ from one another, each checked for the answer it must get."""

    def __init__(
        self,
        server: Server,
        session: aiohttp.ClientSession,
        sockets: aiohttp.ClientSession,
        seed: int,
    ) -> None:
        self.server = server
        self.session = session
        self.sockets = sockets
        self.random = random.Random(seed)
        self.tally = Tally()
        self.today = datetime.now(UTC).date()

    # What a request is made of.

    def user_agent(self) -> str:
        version = f"{self.random.randint(90, 140)}.0.{self.random.randint(0, 9999)}.0"
        return f"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/{version} Safari/537.36"

    def token(self) -> str:
        """A JWT of its own (a new ``iat``), signed with the account's key."""
        now = int(time.time()) - self.random.randint(0, 3600)
        claims = {"iat": now, "exp": now + 7200, "name": "default", "n": self.random.random()}
        return "Bearer " + jwt.encode(claims, self.server.api_key, algorithm="HS256")

    def headers(self, authorization: str | None) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent()}
        if authorization is not None:
            headers["Authorization"] = authorization
        return headers

    def words(self) -> str:
        return " ".join(self.random.sample(WORDS, self.random.randint(1, 3))) + (
            f" {self.random.randint(0, 10**6)}" if self.random.random() < 0.5 else ""
        )

    def period(self) -> tuple[str, str]:
        start = self.today - timedelta(days=self.random.randint(0, 30))
        end = start + timedelta(days=self.random.randint(0, 10))
        return start.isoformat(), min(end, self.today).isoformat()

    # The requests.

    async def send(
        self,
        method: str,
        path: str,
        *,
        expect: int,
        events: int = 0,
        authorization: str | None = None,
        content_type: str | None = None,
        **kwargs: Any,
    ) -> bytes | None:
        headers = self.headers(authorization)
        if content_type is not None:
            headers["Content-Type"] = content_type
        async with self.session.request(
            method, self.server.url + path, headers=headers, **kwargs
        ) as response:
            body = await response.read()
        self.tally.requests += 1
        self.tally.statuses[response.status] += 1
        if response.status != expect:
            if len(self.tally.unexpected) < 20:
                self.tally.unexpected.append(f"{method} {path}: {response.status} {body[:200]!r}")
            return None
        self.tally.events += events
        return body

    async def graphql(
        self, query: str, variables: dict[str, object], *, events: int
    ) -> dict[str, Any]:
        body = await self.send(
            "POST",
            "/graphql",
            expect=200,
            authorization=self.token() if self.random.random() < 0.7 else self.key(),
            json={"query": query, "variables": variables},
        )
        if body is None:
            return {}
        answer: dict[str, Any] = orjson.loads(body)
        if answer.get("errors"):
            self.tally.unexpected.append(f"GraphQL errors: {answer['errors']!r}"[:300])
            return {}
        self.tally.events += events
        return answer

    def key(self) -> str:
        return f"Token {self.server.api_key}"

    async def doofinder_visit(self) -> None:
        body = {"store": str(uuid.uuid4()), "session_id": uuid.uuid4().hex, "url": "/p/1"}
        await self.send(
            "POST", "/api/v2/stats/visit", expect=200, events=1, authorization=self.key(), json=body
        )

    async def doofinder_clicks(self) -> None:
        start, end = self.period()
        params = {"from": start.replace("-", ""), "to": end.replace("-", "")}
        await self.send(
            "GET", "/api/v2/stats/clicks", expect=200, authorization=self.key(), params=params
        )

    async def workplace_click(self) -> None:
        body = {
            "type": "click",
            "query_id": uuid.uuid4().hex,
            "document_id": f"doc-{self.random.randint(0, 10**6)}",
            "page": 1,
            "rank": self.random.randint(0, 9),
            "content_source_id": "cs1",
            "event": "api",
        }
        authorization = self.token() if self.random.random() < 0.5 else self.key()
        await self.send(
            "POST",
            "/api/ws/v1/analytics/event",
            expect=200,
            events=1,
            authorization=authorization,
            json=body,
        )

    async def dspace_view(self) -> None:
        body = {"targetId": str(uuid.uuid4()), "targetType": "item"}
        await self.send("POST", "/api/statistics/viewevents", expect=201, events=1, json=body)

    async def dspace_search(self) -> None:
        body = {
            "query": self.words(),
            "page": {"size": 10, "totalElements": 3, "totalPages": 1, "number": 0},
            "sort": {"by": "score", "order": "desc"},
        }
        await self.send("POST", "/api/statistics/searchevents", expect=201, events=1, json=body)

    async def search_and_click(self) -> None:
        session, user = uuid.uuid4().hex, f"u{self.random.randint(0, 10**6)}"
        alias = self.random.randint(0, 1999)  # twice the documents the caches hold
        search = {"query": self.words(), "resultCount": self.random.randint(0, 50)}
        answer = await self.graphql(
            SEARCH % alias, {"i": {**search, "sessionId": session, "userId": user}}, events=1
        )
        query_id = answer.get("data", {}).get(f"s{alias}", {}).get("queryId")
        if query_id is None:
            return
        click = {"queryId": query_id, "documentId": f"doc-{self.random.randint(0, 999)}"}
        await self.graphql(
            CLICK, {"i": {**click, "rank": 0, "page": 1, "sessionId": session}}, events=1
        )

    async def batch(self) -> None:
        events: list[dict[str, object]] = []
        for _ in range(BATCH):
            session = {"sessionId": uuid.uuid4().hex}
            events.append(
                self.random.choice(
                    [
                        {
                            "visit": {
                                "store": "main",
                                "url": f"/p/{self.random.random()}",
                                **session,
                            }
                        },
                        {"search": {"query": self.words(), "resultCount": 0, **session}},
                        {"view": {"targetId": str(uuid.uuid4()), "targetType": "item", **session}},
                        {"feedback": {"documentId": "doc-1", "score": 1, **session}},
                    ]
                )
            )
        await self.graphql(EVENTS, {"i": events}, events=BATCH)

    async def stats(self) -> None:
        start, end = self.period()
        chosen = self.random.random()
        where = (
            {"query": self.words()}
            if chosen < 0.3
            else {"document": f"doc-{self.random.randint(0, 999)}"}
            if chosen < 0.5
            else None
        )
        variables: dict[str, object] = {
            "from": start,
            "to": end,
            "tz": self.random.choice(ZONES),
            "f": where,
        }
        await self.graphql(STATS, variables, events=0)

    async def refused(self) -> None:
        chosen = self.random.randint(0, 2)
        if chosen == 0:
            await self.send(
                "POST",
                "/api/v2/stats/visit",
                expect=401,
                authorization=f"Token {uuid.uuid4().hex}{uuid.uuid4().hex[:8]}",
                json={"store": "main"},
            )
        elif chosen == 1:
            await self.send(
                "POST",
                "/api/ws/v1/analytics/event",
                expect=400,
                authorization=self.key(),
                data=b'{"type": "click", ',
                content_type="application/json",
            )
        else:
            await self.send("GET", f"/nowhere/{uuid.uuid4().hex}", expect=404)

    def requests(self) -> list[tuple[Callable[[], Awaitable[None]], int]]:
        """Each kind of request and its weight."""
        return [
            (self.doofinder_visit, 20),
            (self.workplace_click, 15),
            (self.dspace_view, 10),
            (self.dspace_search, 5),
            (self.search_and_click, 15),
            (self.batch, 5),
            (self.stats, 8),
            (self.doofinder_clicks, 4),
            (self.refused, 3),
        ]

    async def client(self, deadline: float) -> None:
        kinds = self.requests()
        actions, weights = [k for k, _ in kinds], [w for _, w in kinds]
        while time.monotonic() < deadline:
            await self.random.choices(actions, weights)[0]()

    async def subscribers(self, deadline: float, at_once: int = 8) -> None:
        """Websocket subscribers that come and go until the deadline."""
        open_now: set[asyncio.Task[None]] = set()
        while time.monotonic() < deadline:
            if len(open_now) < at_once:
                task = asyncio.create_task(self.subscriber())
                open_now.add(task)
                task.add_done_callback(open_now.discard)
            await asyncio.sleep(0.05)
        await asyncio.gather(*open_now, return_exceptions=True)

    async def subscriber(self) -> None:
        try:
            await self._subscribe()
        except Exception as error:  # every failure is reported, none raised
            self.tally.unexpected.append(f"websocket: {error!r}"[:300])

    async def _subscribe(self) -> None:
        start, end = self.period()
        query, variables = (
            (LIVE, {"from": start, "to": end}) if self.random.random() < 0.5 else (RECORDED, {})
        )
        url = self.server.url.replace("http", "ws", 1) + "/graphql"
        protocol = self.random.choice(list(PROTOCOLS))
        start_type, result_type, stop_type = PROTOCOLS[protocol]
        socket = await self.sockets.ws_connect(
            url, protocols=(protocol,), headers={"User-Agent": self.user_agent()}
        )
        init = {"type": "connection_init", "payload": {"Authorization": self.token()}}
        await socket.send_json(init)
        acknowledged = await socket.receive_json(timeout=10)
        if acknowledged.get("type") != "connection_ack":
            self.tally.unexpected.append(f"websocket: {acknowledged!r}"[:300])
            await socket.close()
            return
        payload = {"query": query, "variables": variables}
        await socket.send_json({"id": "1", "type": start_type, "payload": payload})
        self.tally.subscriptions += 1
        stay = time.monotonic() + self.random.uniform(0.2, 2.0)
        while (left := stay - time.monotonic()) > 0:
            try:
                message = await socket.receive_json(timeout=left)
            except TimeoutError:
                break
            if message.get("type") == "ping":
                await socket.send_json({"type": "pong"})
            elif message.get("type") not in (result_type, "pong", "ka"):
                self.tally.unexpected.append(f"websocket: {message!r}"[:300])
                break
        if self.random.random() < 0.5:
            await socket.send_json({"id": "1", "type": stop_type})
            await socket.close()
            return
        # Gone without a word, as a phone that lost its network: the connection just drops
        # (aiohttp has no public way to do that).
        self.tally.dropped += 1
        connection = socket._response.connection
        if connection is not None and connection.transport is not None:
            connection.transport.abort()


def worker_figures(pid: int) -> tuple[float, int, int]:
    """Resident memory (MB), open file descriptors and threads of a process (Linux's /proc)."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    rss_mb = int(status["VmRSS"].split()[0]) / 1024
    return rss_mb, len(os.listdir(f"/proc/{pid}/fd")), int(status["Threads"])


async def drive(server: Server, args: argparse.Namespace) -> tuple[Tally, list[Sample]]:
    # Websockets on a session of their own: each holds its connection for as long as it lives,
    # and would wait for one of the requests' pool forever.
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.connections)) as session,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as sockets,
    ):
        traffic = Traffic(server, session, sockets, args.seed)
        began = time.monotonic()
        deadline = began + args.minutes * 60
        samples = [Sample(0.0, 0, *worker_figures(server.process.pid))]

        async def sample() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(min(args.sample_seconds, max(deadline - time.monotonic(), 0)))
                figures = worker_figures(server.process.pid)
                samples.append(Sample(time.monotonic() - began, traffic.tally.requests, *figures))

        await asyncio.gather(
            sample(),
            traffic.subscribers(deadline),
            *(traffic.client(deadline) for _ in range(args.connections)),
        )
        return traffic.tally, samples


@dataclass
class Run:
    backend: str
    tally: Tally
    samples: list[Sample]
    stored: int

    @property
    def warm(self) -> Sample:
        """The first sample past the warm-up."""
        end = self.samples[-1].seconds
        return next(s for s in self.samples if s.seconds >= end * WARM_UP_SHARE)

    @property
    def after_warm_up(self) -> list[Sample]:
        return self.samples[self.samples.index(self.warm) :]

    @property
    def trend_kb_per_100k(self) -> tuple[float, float]:
        """The least-squares slope of memory against requests after the warm-up, and twice its
        standard error: a sample's memory moves by several MB either way as the allocator and
        the garbage collector go, so two samples alone could read a trend that is not there."""
        samples = self.after_warm_up
        xs, ys = [s.requests for s in samples], [s.rss_mb for s in samples]
        if len(samples) < 3 or xs[-1] == xs[0]:
            return 0.0, float("inf")
        slope, intercept = statistics.linear_regression(xs, ys)
        residual = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
        spread = sum((x - statistics.fmean(xs)) ** 2 for x in xs)
        error = (residual / (len(xs) - 2) / spread) ** 0.5
        scale = 1024 * 100_000
        return slope * scale, 2 * error * scale


def soak(backend: str, args: argparse.Namespace) -> Run:
    with fresh_database(backend) as url, searchstats_server(url) as server:
        tally, samples = asyncio.run(drive(server, args))
        stop(server.process)
        stored = asyncio.run(stored_events(url))
    return Run(backend, tally, samples, stored)


EXPLAINED = (
    "A real `searchstats serve` (one worker, on a fresh database) takes traffic in which nearly "
    "every request differs from the last, so that a cache or table keyed by what clients send "
    "and never emptied would show: every door (Doofinder visits and clicks, Workplace events, "
    "DSpace's anonymous view and search events, GraphQL searches with their clicks, 20-event "
    "batches, stats questions by period, time zone and filter), a new JWT for most GraphQL "
    "requests, a new User-Agent, session and user for most events, GraphQL documents that differ "
    "by an alias, some refused requests (unknown key, malformed JSON, unknown path), and "
    "websocket subscribers (`liveStats`, `eventRecorded`, on either protocol) that come and go "
    "all along, half of them dropping their connection without a word. The worker's resident "
    "memory, open file descriptors and threads are read as it goes. The first half of the run "
    "fills the bounded caches, whose keys this traffic keeps new (4,096 user agents' traits, "
    "ua-parser's own, 1,024 parsed and validated GraphQL documents, the periods and zones of "
    "stats questions), the allocator's arenas and SQLite's page cache; the trend is the "
    "least-squares slope of memory against requests over the second half, with twice its "
    "standard error. The database must hold exactly the events acknowledged."
)


def report(runs: list[Run], args: argparse.Namespace) -> str:
    command = (
        f"python -m bench.soak --minutes {args.minutes:g} --backends {args.backends} "
        f"--connections {args.connections} --sample-seconds {args.sample_seconds:g}"
    )
    lines = [
        "## Memory under long, varied traffic",
        "",
        f"Command: `{command}`. {EXPLAINED}",
        "",
        "| database | requests | requests/s | events stored | subscribers (dropped) | RSS MB "
        "at half time → end (lowest to highest) | trend, KB per 100,000 requests (± 2 standard "
        "errors) | file "
        "descriptors | threads | statuses |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- | --- |",
    ]
    for run in runs:
        first, warm, last = run.samples[0], run.warm, run.samples[-1]
        memory = [s.rss_mb for s in run.after_warm_up]
        trend, margin = run.trend_kb_per_100k
        statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(run.tally.statuses.items()))
        lines.append(
            f"| {run.backend} | {last.requests:,} | {last.requests / last.seconds:,.0f} "
            f"| {run.stored:,} of {run.tally.events:,} acknowledged "
            f"| {run.tally.subscriptions:,} ({run.tally.dropped:,}) "
            f"| {warm.rss_mb:.1f} → {last.rss_mb:.1f} ({min(memory):.1f} to {max(memory):.1f}) "
            f"| {trend:,.0f} ± {margin:,.0f} "
            f"| {first.fds} → {warm.fds} → {last.fds} | {first.threads} → {last.threads} "
            f"| {statuses} |"
        )
    lines += ["", "![Worker memory against requests served](img/soak-memory.png)"]
    return "\n".join(lines)


def plot(runs: list[Run], out: Path) -> Path:
    figure, axes = plt.subplots(figsize=(9, 4))
    for run in runs:
        axes.plot(
            [s.requests for s in run.samples],
            [s.rss_mb for s in run.samples],
            marker=".",
            label=run.backend,
            color=COLOURS.get(run.backend),
        )
        axes.axvline(run.warm.requests, color=COLOURS.get(run.backend), linestyle=":", alpha=0.5)
    axes.set_xlabel("requests served (dotted: half time, where the trend is read from)")
    axes.set_ylabel("worker resident memory, MB")
    axes.set_ylim(bottom=0)
    axes.set_title("One worker's memory under long, varied traffic")
    axes.legend(title="database")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "soak-memory.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    runs = []
    for backend in args.backends.split(","):
        run = soak(backend, args)
        runs.append(run)
        for sample in run.samples:
            print(
                f"{backend} {sample.seconds:7.1f} s {sample.requests:9,} requests "
                f"{sample.rss_mb:7.1f} MB {sample.fds:4} fds {sample.threads:3} threads",
                flush=True,
            )
        for problem in run.tally.unexpected:
            print(f"{backend}: unexpected: {problem}", file=sys.stderr, flush=True)
    markdown = report(runs, args)
    print(markdown)
    failed = [r for r in runs if r.tally.unexpected or r.stored != r.tally.events]
    if not args.no_write:
        write_section("soak", markdown)
        plot(runs, IMG)
    if failed:
        sys.exit(f"unexpected answers or events lost on {', '.join(r.backend for r in failed)}")


if __name__ == "__main__":
    main()
