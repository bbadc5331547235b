"""Two checkouts of searchstats, the same doors, served and driven in alternation.

    python -m bench.compare --before DIR [--after DIR] [--door "REST visit" --door …]
                            [--backends sqlite,postgresql] [--rounds 4] [--seconds 6]
                            [--workers 1]

``DIR`` is a checkout of the code to compare (``git worktree add DIR REV``); ``--after`` defaults
to this one; ``--door``, given once for each door to drive (its name in bench.ingest, which may
hold a comma), defaults to the two REST doors. Each round starts ``searchstats serve`` from each
checkout in turn on a fresh database (the order reversed every other round, so that neither side
always runs first), with ``--workers`` workers, and drives every door with wrk, as
``bench.ingest`` does. It prints each run, then each door's mean requests/s before and after,
their ratio, and the median p99s. On a machine whose speed drifts from minute to minute, this is
the measure of a change: both sides meet the same drift. Nothing is written.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from bench.common import fresh_database, searchstats_server
from bench.ingest import DOORS, REST_VISIT, REST_WORKPLACE, measure_door

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=HERE)
    parser.add_argument("--door", action="append", dest="doors")
    parser.add_argument("--backends", default="sqlite")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers of each server")
    args = parser.parse_args()
    doors = args.doors or [REST_VISIT, REST_WORKPLACE]
    unknown = set(doors) - {door[0] for door in DOORS}
    if unknown:
        parser.error(f"unknown doors: {', '.join(sorted(unknown))}")
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    for side, root in sides.items():
        if not (root / "app" / "cli.py").is_file():
            parser.error(f"--{side} {root} is not a checkout of searchstats")
    for backend in args.backends.split(","):
        compare(backend, sides, doors, args)


def compare(
    backend: str, sides: dict[str, Path], doors: list[str], args: argparse.Namespace
) -> None:
    served: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    p99: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    for round_ in range(args.rounds):
        order = list(sides.items())
        for side, root in order if round_ % 2 == 0 else reversed(order):
            # The server runs in a folder of its own: the checkout on PYTHONPATH is what it runs.
            env = {"PYTHONPATH": str(root)}
            with (
                fresh_database(backend) as url,
                searchstats_server(url, env=env, workers=args.workers) as server,
            ):
                for door in doors:
                    result, _ = measure_door(server, door, args)
                    served[(door, side)].append(result.requests_per_second)
                    p99[(door, side)].append(result.p99_ms)
                    print(
                        f"{backend} round {round_ + 1} {side}: {door} "
                        f"{result.requests_per_second:,.0f} requests/s, p99 {result.p99_ms} ms",
                        flush=True,
                    )
    print()
    print(
        f"| door ({backend}) | before requests/s | after requests/s | after ÷ before "
        "| before p99 ms | after p99 ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for door in doors:
        before = statistics.mean(served[(door, "before")])
        after = statistics.mean(served[(door, "after")])
        print(
            f"| {door} | {before:,.0f} | {after:,.0f} | {after / before:.2f} "
            f"| {statistics.median(p99[(door, 'before')]):.1f} "
            f"| {statistics.median(p99[(door, 'after')]):.1f} |"
        )
    print()


if __name__ == "__main__":
    main()
