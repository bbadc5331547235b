"""Where a door's time goes: ``searchstats serve`` sampled by py-spy while wrk drives it.

    python -m bench.profile [--door "REST visit"] [--backend sqlite] [--seconds 8]

Prints the server's self time by package and its busiest frames, as markdown tables, from the
samples of its event-loop thread (the one that serves requests; SQLite's own thread is left
out), then what the group commit did meanwhile, from the server's own ``/metrics``: how many
batches, how big, and for how much of the run a batch was being written and committed (near
all of it: requests wait on the commit, not on the CPU). py-spy pauses the server for each
of its 200 samples a second, so the server runs slower while sampled (most for deep GraphQL
stacks); the shares stay where the time goes. Nothing is written: the tables are quoted in
docs/performance.md with the command that made them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.common import fresh_database, searchstats_server
from bench.ingest import DOORS, measure_door

# "function (path/to/file.py:123)" as py-spy writes a frame in its raw format.
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
SITE = ("site-packages/", "dist-packages/")


@dataclass
class Profile:
    samples: int = 0
    by_package: Counter[str] = field(default_factory=Counter)
    by_frame: Counter[str] = field(default_factory=Counter)
    other_threads: int = 0


def package_of(path: str) -> str:
    """``starlette``, ``app``, ``asyncio``…: the top-level package a frame's file belongs to.

    py-spy names installed and standard-library files from their package down
    (``starlette/routing.py``); others by their full path.
    """
    for marker in SITE:
        path = path.split(marker, 1)[-1]
    if path.startswith("<"):
        return "(generated code)"
    for ours in ("app", "graphql_schema"):
        if f"/{ours}/" in path:
            return ours
    return path.lstrip("/").split("/", 1)[0].removesuffix(".py") or "(native)"


def read_samples(raw: Path) -> Profile:
    profile = Profile()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        samples = int(count)
        if not any("run_forever" in f or "Runner.run" in f or "uvicorn" in f for f in frames):
            profile.other_threads += samples  # aiosqlite's thread, the metrics sampler…
            continue
        profile.samples += samples
        match = FRAME.match(frames[-1])
        function, path = (match["function"], match["file"]) if match else (frames[-1], "")
        # uvloop's C loop, waiting in epoll or running its callbacks, shows as asyncio's
        # Runner.run with nothing above it.
        idle = function == "Runner.run"
        profile.by_package["(event loop: uvloop, idle included)" if idle else package_of(path)] += (
            samples
        )
        short = path.split(SITE[0])[-1].split("/work/")[-1]
        profile.by_frame[f"{function} ({short})"] += samples
    return profile


def tables(profile: Profile, top: int) -> str:
    total = profile.samples or 1
    lines = ["| package | self time |", "| --- | ---: |"]
    lines += [f"| {name} | {n / total:.1%} |" for name, n in profile.by_package.most_common(12)]
    lines += ["", "| frame | self time |", "| --- | ---: |"]
    lines += [f"| `{name}` | {n / total:.1%} |" for name, n in profile.by_frame.most_common(top)]
    return "\n".join(lines)


@dataclass
class GroupCommit:
    batches: int
    events: int
    committing_seconds: float
    small_batches: int  # of at most SMALL_BATCH events

    def summary(self, seconds: float) -> str:
        mean = self.events / self.batches if self.batches else 0.0
        return (
            f"Group commit meanwhile: {self.batches:,} batches of {mean:.1f} events on average, "
            f"{self.small_batches:,} of them of at most {SMALL_BATCH} events; a batch was being "
            f"written and committed {self.committing_seconds / seconds:.0%} of the run."
        )


SMALL_BATCH = 2


def group_commit(metrics: str) -> GroupCommit:
    """The server's ingest batch and commit histograms (cumulative since it started)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                if sample.name == "searchstats_ingest_batch_events_bucket" and float(
                    sample.labels["le"]
                ) == float(SMALL_BATCH):
                    found["small"] = sample.value
                continue
            found[sample.name] = sample.value
    return GroupCommit(
        batches=int(found.get("searchstats_ingest_batch_events_count", 0)),
        events=int(found.get("searchstats_ingest_batch_events_sum", 0)),
        committing_seconds=found.get("searchstats_ingest_commit_seconds_sum", 0.0),
        small_batches=int(found.get("small", 0)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--door", default=DOORS[0][0], choices=[door[0] for door in DOORS])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    beside = Path(sys.executable).with_name("py-spy")  # a virtualenv's, when not activated
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        sys.exit("py-spy is not installed (pip install py-spy)")
    with (
        tempfile.TemporaryDirectory(prefix="searchstats-profile-") as folder,
        fresh_database(args.backend) as url,
        searchstats_server(url) as server,
    ):
        raw = Path(folder) / "samples.txt"
        record = ["record", "-r", "200", "-f", "raw", "-o", str(raw), "-d", str(args.seconds)]
        sampler = subprocess.Popen(
            [spy, *record, "-p", str(server.process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # py-spy attaches
        result, per_request = measure_door(server, args.door, args)
        sampler.wait(timeout=args.seconds + 30)
        profile = read_samples(raw)
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as answer:
            commits = group_commit(answer.read().decode())
    print(
        f"{args.door} on {args.backend}: {result.requests_per_second:,.0f} requests/s "
        f"({result.requests_per_second * per_request:,.0f} events/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms) while sampled; "
        f"{profile.samples:,} samples of the event loop's thread"
    )
    print()
    print(tables(profile, args.top))
    print()
    print(commits.summary(args.seconds))


if __name__ == "__main__":
    main()
