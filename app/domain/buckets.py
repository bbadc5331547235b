"""Time buckets: the 15-minute UTC rollup grain, and the coarser grains kept beside it."""

from __future__ import annotations

from datetime import UTC, datetime

ROLLUP_SECONDS = 15 * 60
ROLLUP_MICROS = ROLLUP_SECONDS * 1_000_000
HOUR_MICROS = 3600 * 1_000_000
DAY_MICROS = 86_400 * 1_000_000
# The rollup grains, finest first; each divides the next, and all start at the Unix epoch.
GRAINS = (ROLLUP_MICROS, HOUR_MICROS, DAY_MICROS)


def rollup_bucket(instant: datetime) -> int:
    """Start of the 15-minute UTC bucket holding ``instant``, in epoch microseconds."""
    seconds = int(instant.astimezone(UTC).timestamp())
    return (seconds - seconds % ROLLUP_SECONDS) * 1_000_000


def grain_ranges(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """[lo, hi) in epoch microseconds as (grain, lo, hi) ranges that read the fewest rollup rows.

    The middle goes to the coarsest grain whose whole buckets it holds, the edges to finer ones:
    a UTC day is one daily row, a local day at +01:00 24 hourly ones, a day at +05:45 hourly
    rows with quarter-hour edges. Raises ValueError unless both ends fall on 15-minute bounds.
    """
    if lo >= hi:
        return []
    for grain in reversed(GRAINS):
        first = -(-lo // grain) * grain  # the first grain boundary at or after lo
        last = hi - hi % grain
        if first < last:
            return [*grain_ranges(lo, first), (grain, first, last), *grain_ranges(last, hi)]
    raise ValueError("rollup ranges must start and end on 15-minute boundaries")
