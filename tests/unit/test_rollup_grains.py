"""A bucket read from rollups is covered exactly once, by the coarsest rows that fit it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.buckets import DAY_MICROS, GRAINS, HOUR_MICROS, ROLLUP_MICROS, grain_ranges

quarters = st.integers(0, 4 * 24 * 800).map(
    lambda n: 1_700_000_000_000_000 // DAY_MICROS * DAY_MICROS + n * ROLLUP_MICROS
)


@given(lo=quarters, hi=quarters)
def test_ranges_partition_the_bucket(lo: int, hi: int) -> None:
    ranges = grain_ranges(lo, hi)
    if lo >= hi:
        assert ranges == []
        return
    assert ranges[0][1] == lo
    assert ranges[-1][2] == hi
    for (_, _, end), (_, start, _) in itertools.pairwise(ranges):
        assert end == start
    for grain, first, last in ranges:
        assert grain in GRAINS
        assert first < last
        assert first % grain == 0
        assert last % grain == 0
    # Never finer than needed: no range holds a whole bucket of a coarser grain.
    for grain, first, last in ranges:
        for coarser in (g for g in GRAINS if g > grain):
            assert -(-first // coarser) * coarser + coarser > last


def test_days_hours_and_quarters() -> None:
    day = 20_000 * DAY_MICROS
    assert grain_ranges(day, day + DAY_MICROS) == [(DAY_MICROS, day, day + DAY_MICROS)]
    # A local day at +01:00: 24 hourly rows; at +05:45: quarter-hour edges around hourly rows.
    paris = day - HOUR_MICROS
    assert grain_ranges(paris, paris + DAY_MICROS) == [(HOUR_MICROS, paris, paris + DAY_MICROS)]
    kathmandu = day - 5 * HOUR_MICROS - 3 * ROLLUP_MICROS
    assert grain_ranges(kathmandu, kathmandu + DAY_MICROS) == [
        (ROLLUP_MICROS, kathmandu, day - 5 * HOUR_MICROS),
        (HOUR_MICROS, day - 5 * HOUR_MICROS, day + 18 * HOUR_MICROS),
        (ROLLUP_MICROS, day + 18 * HOUR_MICROS, kathmandu + DAY_MICROS),
    ]
    # A month in UTC: whole days.
    assert grain_ranges(day, day + 31 * DAY_MICROS) == [(DAY_MICROS, day, day + 31 * DAY_MICROS)]


def test_unaligned_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="15-minute"):
        grain_ranges(ROLLUP_MICROS + 1, DAY_MICROS)
