"""Live fan-out: websocket subscribers of liveStats while events are ingested, on one machine.

    python -m bench.fanout [--subscribers 1000] [--rate 1000] [--seconds 10] [--interval-ms 100]
                           [--backend sqlite|postgresql] [--workers N --broker-url URL]
                           [--no-write]

Against a real ``searchstats serve`` on loopback, in one run:
1. ingest throughput with no subscriber (as fast as the clients go, for --seconds);
2. --subscribers websocket clients subscribe to the same ``liveStats`` question; events are
   ingested at --rate per second for --seconds; each event's delivery latency is the time from
   its acknowledgement to the first message of each subscriber that counts it (p50, p99 over
   every event and subscriber). The subscribers run in a process of their own (see
   ``bench.subscriber``), so reading them does not hold the ingest client's loop;
3. ingest throughput again, with every subscriber connected and receiving;
4. once every interval is done and the subscribers are gone, ingest with no subscriber again:
   the slowdown is against the mean of the two runs with no subscriber, so a drift of the
   server or the machine during the run is not counted as the subscribers' doing.
The figures replace the "fanout" section of docs/performance.md (unless --no-write).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson

from bench.common import fresh_database, searchstats_server, write_section
from bench.subscriber import Received, SubscriberProcess

LIVE = """
subscription($from: String!, $to: String!, $interval: Int!) {
  liveStats(from: $from, to: $to, intervalMs: $interval) { visits { totalCount } }
}"""
VISIT = orjson.dumps({"store": "b0b0a7a5-5b3c-4d7e-8f9a-bb5a7e0f1c2d", "url": "/shoes"})
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"
CONNECTIONS = 32  # HTTP connections driving the ingest


class CpuMeter:
    """CPU time used by the server (its workers included) and by the benchmark's clients (this
    process and the subscribers' one), in cores."""

    def __init__(self, server_pid: int) -> None:
        self._pid = server_pid
        self._tick = os.sysconf("SC_CLK_TCK")
        self.clients: list[int] = []  # the benchmark's processes besides this one

    def _server_seconds(self) -> float:
        return sum(self._cpu(pid) for pid in self._tree(self._pid)) / self._tick

    def _tree(self, pid: int) -> list[int]:
        children = Path(f"/proc/{pid}/task/{pid}/children")
        found = children.read_text().split() if children.exists() else []
        return [pid, *(p for child in found for p in self._tree(int(child)))]

    @staticmethod
    def _cpu(pid: int) -> int:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return 0
        return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks

    def _client_seconds(self) -> float:
        return time.process_time() + sum(self._cpu(pid) for pid in self.clients) / self._tick

    def start(self) -> tuple[float, float, float]:
        return time.monotonic(), self._server_seconds(), self._client_seconds()

    def shares(self, started: tuple[float, float, float]) -> tuple[float, float]:
        wall = time.monotonic() - started[0]
        server = (self._server_seconds() - started[1]) / wall
        return server, (self._client_seconds() - started[2]) / wall


@dataclass
class Figures:
    subscribers: int
    connected: int
    rate: float
    interval_ms: int
    baseline_per_s: float
    paced_per_s: float
    after_per_s: float  # ingest with no subscriber again, at the end of the run
    loaded_per_s: float
    latencies_ms: list[float]
    undelivered: int
    dropped: int
    messages: int
    cpu: dict[str, tuple[float, float]] = field(default_factory=dict)  # phase: (server, client)

    def percentile(self, fraction: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def unloaded_per_s(self) -> float:
        return (self.baseline_per_s + self.after_per_s) / 2

    @property
    def slowdown(self) -> float:
        unloaded = self.unloaded_per_s
        return 1 - self.loaded_per_s / unloaded if unloaded else float("nan")


async def ingest(http: aiohttp.ClientSession, *, seconds: float, rate: float | None) -> list[float]:
    """POST visits for ``seconds`` (at ``rate`` a second, else flat out); their ack times."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    acks: list[float] = []
    issued = 0

    async def client() -> None:
        nonlocal issued
        while True:
            now = loop.time()
            if now - start >= seconds:
                return
            if rate is not None:
                due = start + issued / rate
                issued += 1
                if due - start >= seconds:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
            async with http.post("/api/v2/stats/visit", data=VISIT) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"ingest refused: {response.status} {body[:200]!r}")
            acks.append(time.monotonic())  # the clock the subscribers read arrivals on

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return sorted(acks)


def latencies(subscribers: Sequence[Received], acks: Sequence[float], base: int) -> list[float]:
    """For each acknowledged event and subscriber: first arrival counting it, minus its ack."""
    found: list[float] = []
    for subscriber in subscribers:
        arrivals = iter(subscriber.seen)
        current = next(arrivals, None)
        for rank, ack in enumerate(acks, start=1):
            while current is not None and current[1] < base + rank:
                current = next(arrivals, None)
            if current is None:
                break
            found.append((current[0] - ack) * 1000)
    return found


async def run(args: argparse.Namespace, base_url: str, key: str, meter: CpuMeter) -> list[Figures]:
    headers = {
        "Authorization": f"Token {key}",
        "User-Agent": BROWSER,
        "Content-Type": "application/json",
    }
    # aiohttp, not httpx: at a thousand requests a second httpx's client costs more CPU than the
    # server it measures, on the same two cores.
    async with aiohttp.ClientSession(
        base_url,
        headers=headers,
        connector=aiohttp.TCPConnector(limit=CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as http:
        started = meter.start()
        baseline = len(await ingest(http, seconds=args.seconds, rate=None)) / args.seconds
        idle = meter.shares(started)
        ws_url = base_url.replace("http://", "ws://") + "/graphql"
        runs = [
            await with_subscribers(
                http, args, ws_url, f"Token {key}", interval, (baseline, idle), meter
            )
            for interval in args.interval_ms
        ]
        after = len(await ingest(http, seconds=args.seconds, rate=None)) / args.seconds
        return [replace(figures, after_per_s=after) for figures in runs]


async def with_subscribers(
    http: aiohttp.ClientSession,
    args: argparse.Namespace,
    ws_url: str,
    credential: str,
    interval_ms: int,
    baseline: tuple[float, tuple[float, float]],
    meter: CpuMeter,
) -> Figures:
    today = datetime.now(UTC).date()
    variables: dict[str, object] = {
        "from": str(today - timedelta(days=1)),
        "to": str(today + timedelta(days=1)),
        "interval": interval_ms,
    }
    process = SubscriberProcess(ws_url, credential, args.subscribers, LIVE, variables)
    meter.clients = [process.pid]
    try:
        first = await process.connected()
        base = max(s.seen[0][1] for s in first if s.seen)
        started = meter.start()
        paced = await ingest(http, seconds=args.seconds, rate=args.rate)
        paced_cpu = meter.shares(started)
        # Let the last interval's messages arrive before measuring the second load.
        expected = base + len(paced)
        received = await process.delivered(expected)
        started = meter.start()
        loaded = await ingest(http, seconds=args.seconds, rate=None)
        loaded_cpu = meter.shares(started)
    finally:
        final = await process.close()
        meter.clients = []
    return Figures(
        subscribers=args.subscribers,
        connected=sum(1 for s in first if s.seen),
        rate=args.rate,
        interval_ms=interval_ms,
        baseline_per_s=baseline[0],
        paced_per_s=len(paced) / args.seconds,
        after_per_s=baseline[0],  # until measured, at the end of the run
        loaded_per_s=len(loaded) / args.seconds,
        latencies_ms=latencies(received, paced, base),
        undelivered=sum(s.last < expected for s in received),
        dropped=sum(1 for s in final if s.ended),
        messages=sum(len(s.seen) for s in final),
        cpu={"baseline": baseline[1], "paced": paced_cpu, "loaded": loaded_cpu},
    )


def markdown(
    runs: Sequence[Figures],
    command: str,
    backend: str,
    workers: int = 1,
    broker_url: str | None = None,
) -> str:
    def row(name: str, cell: Callable[[Figures], str]) -> str:
        return f"| {name} | " + " | ".join(cell(f) for f in runs) + " |"

    first = runs[0]
    return "\n".join(
        [
            "## Live fan-out",
            "",
            f"`{command}`",
            "",
            f"`searchstats serve` with {workers} worker{'s' if workers > 1 else ''} ({backend}, "
            f"{'Redis' if broker_url else 'in-process'} broker) and the benchmark's",
            "clients share one 2-core machine, over loopback. Every subscriber asks the same",
            "`liveStats` question, so the worker computes it once per refresh and fans the answer",
            "out. Ingest is Doofinder visits, one event per request, 32 connections. Latency: from",
            "an event's acknowledgement to the first message of each subscriber that counts it",
            "(every event times every subscriber). Ingest with no subscriber, flat out: "
            f"**{first.baseline_per_s:,.0f} events/s** at the start of the run, "
            f"**{first.after_per_s:,.0f}** at its end; the slowdown is against their mean.",
            "",
            "| | " + " | ".join(f"`intervalMs: {f.interval_ms}`" for f in runs) + " |",
            "| --- |" + " ---: |" * len(runs),
            row("subscribers connected", lambda f: f"{f.connected} of {f.subscribers}"),
            row(
                f"paced ingest, target {first.rate:,.0f}/s: achieved",
                lambda f: f"{f.paced_per_s:,.0f}/s",
            ),
            row("delivery latency p50", lambda f: f"{f.percentile(0.50):,.0f} ms"),
            row("delivery latency p99", lambda f: f"{f.percentile(0.99):,.0f} ms"),
            row("liveStats messages received", lambda f: f"{f.messages:,}"),
            row("ingest flat out with the subscribers", lambda f: f"{f.loaded_per_s:,.0f}/s"),
            row("ingest slowed by", lambda f: f"{f.slowdown:.0%}"),
            row("missed the last update / dropped", lambda f: f"{f.undelivered} / {f.dropped}"),
            row("server CPU, paced / flat out (cores)", lambda f: _cpu(f, 0)),
            row("benchmark client CPU, paced / flat out (cores)", lambda f: _cpu(f, 1)),
            "",
            "CPU with no subscriber, flat out: server "
            f"{first.cpu['baseline'][0]:.2f}, client {first.cpu['baseline'][1]:.2f} cores.",
        ]
    )


def _cpu(figures: Figures, which: int) -> str:
    return f"{figures.cpu['paced'][which]:.2f} / {figures.cpu['loaded'][which]:.2f}"


def main(argv: Sequence[str] | None = None) -> list[Figures]:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--interval-ms",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[250, 1000],
        help="one or more, comma-separated: each is measured in turn",
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--broker-url", help="e.g. redis://127.0.0.1:6379/0 (for --workers N)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    command = "python -m bench.fanout " + " ".join(sys.argv[1:] if argv is None else argv)
    broker = {"SEARCHSTATS_BROKER_URL": args.broker_url} if args.broker_url else {}
    if args.workers > 1 and not args.broker_url:
        parser.error("--workers above 1 needs --broker-url: workers share events through it")
    started = time.monotonic()
    with (
        fresh_database(args.backend) as database_url,
        searchstats_server(database_url, workers=args.workers, env=broker) as server,
    ):
        meter = CpuMeter(server.process.pid)
        figures = asyncio.run(run(args, server.url, server.api_key, meter))
    text = markdown(figures, command.strip(), args.backend, args.workers, args.broker_url)
    print(text)
    print(f"\n(run took {time.monotonic() - started:.0f} s)")
    if not args.no_write:
        write_section("fanout", text)
    return figures


if __name__ == "__main__":
    main()
