"""The plots of docs/performance.md, drawn from the tables the benchmarks wrote there.

    python -m bench.plots [--markdown docs/performance.md] [--out docs/img]

bench.ingest and bench.stats call ``plot_sections()`` after writing their section, so the PNGs
always show the figures of the tables next to them; run this module to redraw them by hand
(after a merge that rewrote a section, say). Reading the tables, not the benchmarks' objects,
keeps the plots out of the benchmarks' way.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench.common import PERFORMANCE_MD

IMG = PERFORMANCE_MD.parent / "img"
COLOURS = {"none": "#7f7f7f", "sqlite": "#1f77b4", "postgresql": "#d62728"}
Table = list[dict[str, str]]


def section(markdown: str, name: str) -> str:
    """The text of one generated section (``<!-- bench:NAME:begin -->`` …), or ``""``."""
    match = re.search(rf"<!-- bench:{name}:begin -->(.*?)<!-- bench:{name}:end -->", markdown, re.S)
    return match[1] if match else ""


def tables(markdown: str) -> list[Table]:
    """Every pipe table of the text, each as rows keyed by its header."""
    found: list[Table] = []
    block: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            block.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2:
            header, body = block[0], block[2:]
            found.append([dict(zip(header, cells, strict=False)) for cells in body])
        block = []
    return found


def table_with(markdown: str, *columns: str) -> Table:
    """The first table that has all these columns (empty when none does)."""
    for table in tables(markdown):
        if table and all(column in table[0] for column in columns):
            return table
    return []


def number(cell: str) -> float | None:
    try:
        return float(cell.replace(",", ""))
    except ValueError:
        return None


def _grouped(
    rows: Table, doors: list[str], database: str, offset: float, *columns: str
) -> tuple[list[float], list[list[float]]]:
    """Bar positions of one database's rows that have every column, and those columns' values."""
    by_door = {row["door"]: row for row in rows if row["database"] == database}
    positions: list[float] = []
    values: list[list[float]] = [[] for _ in columns]
    for index, door in enumerate(doors):
        row = by_door.get(door)
        found = [number(row.get(column, "")) for column in columns] if row else [None]
        if all(value is not None for value in found):
            positions.append(index + offset)
            for column, value in zip(values, found, strict=True):
                column.append(value or 0.0)
    return positions, values


def _door_axes(doors: list[str], databases: list[str], title: str) -> tuple[Figure, Axes]:
    figure, axes = plt.subplots(figsize=(11, 0.45 * len(doors) * len(databases) + 1.5))
    height = 0.8 / len(databases)
    axes.set_yticks([p + height * (len(databases) - 1) / 2 for p in range(len(doors))], doors)
    axes.invert_yaxis()
    axes.set_title(title)
    axes.margins(x=0.15)
    return figure, axes


def plot_ingest(rows: Table, out: Path) -> list[Path]:
    """Events/s, and p50/p99 latency, per door and database: two PNGs."""
    doors = list(dict.fromkeys(row["door"] for row in rows))
    databases = list(dict.fromkeys(row["database"] for row in rows))
    height = 0.8 / len(databases)

    figure, axes = _door_axes(doors, databases, "Ingest throughput per door")
    for index, database in enumerate(databases):
        positions, (events,) = _grouped(rows, doors, database, index * height, "events/s")
        bars = axes.barh(positions, events, height, label=database, color=COLOURS.get(database))
        axes.bar_label(bars, labels=[f"{v:,.0f}" for v in events], padding=3, fontsize=7)
    axes.set_xlabel("events per second (higher is better)")
    axes.legend(title="database", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    throughput = _save(figure, out / "ingest-throughput.png")

    figure, axes = _door_axes(doors, databases, "Ingest latency per door")
    for index, database in enumerate(databases):
        positions, (p50, p99) = _grouped(rows, doors, database, index * height, "p50 ms", "p99 ms")
        colour = COLOURS.get(database)
        axes.barh(positions, p99, height, color=colour, alpha=0.35)
        bars = axes.barh(positions, p50, height, color=colour, label=database)
        axes.bar_label(
            bars, labels=[f"{v:.1f}" for v in p50], fontsize=7, label_type="center", color="white"
        )
        for spot, value in zip(positions, p99, strict=True):
            axes.annotate(
                f"{value:.0f}",
                (value, spot),
                xytext=(3, -3),
                textcoords="offset points",
                fontsize=7,
            )
    axes.set_xscale("log")
    axes.set_xlabel("latency, ms (log scale): p50 solid, p99 light")
    axes.legend(title="database", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    latency = _save(figure, out / "ingest-latency.png")
    return [throughput, latency]


STATS_SERIES = (
    ("plain SQL ms", "plain SQL group-by", ":"),
    ("GraphQL ms", "GraphQL", "-"),
    ("REST ms", "REST", "--"),
    ("filtered ms", "GraphQL, filtered by query", "-."),
)


def plot_stats(rows: Table, out: Path) -> list[Path]:
    """Latency of the 90-day question against the number of events, per database."""
    figure, axes = plt.subplots(figsize=(10, 5))
    for database in dict.fromkeys(row["database"] for row in rows):
        measured = sorted(
            (row for row in rows if row["database"] == database),
            key=lambda row: number(row["events"]) or 0,
        )
        sizes = [number(row["events"]) or 0 for row in measured]
        for column, name, style in STATS_SERIES:
            values = [number(row.get(column, "")) for row in measured]
            points = [(s, v) for s, v in zip(sizes, values, strict=True) if v is not None]
            if points:
                axes.plot(
                    *zip(*points, strict=True),
                    style,
                    marker="o",
                    color=COLOURS.get(database),
                    label=f"{database}: {name}",
                )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("events in the table (log scale)")
    axes.set_ylabel("median latency, ms (log scale)")
    axes.set_title("Clicks per day over 90 days: latency against data size")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(True, which="major", alpha=0.3)
    return [_save(figure, out / "stats-latency.png")]


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp in the file: the same figures make the same PNG.
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return path


def plot_sections(markdown_path: Path = PERFORMANCE_MD, out: Path = IMG) -> list[Path]:
    """Redraw the plots of every benchmark section that has its table; returns the files."""
    markdown = markdown_path.read_text()
    paths = []
    ingest = table_with(section(markdown, "ingest") or markdown, "door", "events/s", "p99 ms")
    if ingest:
        paths += plot_ingest(ingest, out)
    stats = table_with(section(markdown, "stats") or markdown, "events", "GraphQL ms")
    if stats:
        paths += plot_stats(stats, out)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", type=Path, default=PERFORMANCE_MD)
    parser.add_argument("--out", type=Path, default=IMG)
    args = parser.parse_args()
    for path in plot_sections(args.markdown, args.out):
        print(path)


if __name__ == "__main__":
    main()
