"""A bucket read from rollups is covered exactly once, by the coarsest rows that fit it.

A period is read from rollups only when both its ends fall on 15-minute boundaries.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.buckets import DAY_MICROS, GRAINS, HOUR_MICROS, ROLLUP_MICROS, grain_ranges
from app.domain.periods import Period
from app.storage.types import to_micros

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


@given(
    start=st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1), timezones=st.just(UTC)),
    length=st.timedeltas(timedelta(microseconds=1), timedelta(days=400)),
)
def test_a_period_reads_rollups_only_when_both_ends_are_on_quarter_hours(
    start: datetime, length: timedelta
) -> None:
    period = Period(start, start + length, ZoneInfo("Etc/UTC"))
    on_quarters = [
        t.microsecond == 0 and t.second == 0 and t.minute % 15 == 0
        for t in (period.start, period.end)
    ]
    assert period.rollup_aligned == all(on_quarters)
    if period.rollup_aligned:  # and then the rollups cover it exactly
        grain_ranges(to_micros(period.start), to_micros(period.end))


def test_a_fraction_of_a_second_past_a_quarter_hour_is_not_on_it() -> None:
    quarter = datetime(2025, 6, 1, 10, 15, tzinfo=UTC)
    utc = ZoneInfo("Etc/UTC")
    assert Period(quarter - timedelta(hours=1), quarter, utc).rollup_aligned
    for fraction in (timedelta(microseconds=1), timedelta(milliseconds=123)):
        assert not Period(quarter - timedelta(hours=1), quarter + fraction, utc).rollup_aligned
        assert not Period(quarter + fraction, quarter + timedelta(hours=1), utc).rollup_aligned
