"""Periods and calendar buckets, exact in every IANA timezone.

A bucket starts at a local wall-clock boundary (the hour, midnight, Monday, the first of the
month) and ends where the next one starts, so a DST day lasts 23 or 25 hours and a zone at
+05:45 or with a 30-minute DST shift is bucketed exactly. All instants here are UTC-aware.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.domain.buckets import ROLLUP_SECONDS
from app.errors import BadParams

MAX_BUCKETS = 1500
# Local wall-clock times in the period's zone: 2000-01-01 in Madrid starts an hour before 2000
# in UTC, and answers that hour with nothing (no event is recorded before 2000-01-01 UTC).
EARLIEST = datetime(2000, 1, 1)
LATEST = datetime(2100, 1, 1)
OUT_OF_RANGE = "the period must lie between 2000-01-01 and 2100-01-01 in its timezone"
# No timezone is a day away from UTC: a date further than this outside the range is outside it
# in every timezone, and is refused before any arithmetic on it (which overflows near the
# calendar's ends, years 1 and 9999).
RANGE_MARGIN = timedelta(days=2)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROLLUP_INTERVAL = timedelta(seconds=ROLLUP_SECONDS)
ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")


class Granularity(StrEnum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Period:
    """The half-open interval [start, end) of UTC instants, read in ``zone``."""

    start: datetime
    end: datetime
    zone: ZoneInfo

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("period bounds must be timezone-aware")

    @property
    def rollup_aligned(self) -> bool:
        """True when both ends fall on 15-minute UTC boundaries, so rollups cover it exactly.

        To the microsecond: an end a fraction of a second past a boundary (as JavaScript's
        toISOString writes instants) is not on it, and is read from the raw events.
        """
        return on_rollup_grid(self.start) and on_rollup_grid(self.end)


def on_rollup_grid(instant: datetime) -> bool:
    """True when the instant is a 15-minute UTC boundary, where rollup buckets start."""
    return (instant - EPOCH) % ROLLUP_INTERVAL == timedelta(0)


def rollups_answer(period: Period, granularity: Granularity) -> bool:
    """True when every bucket of the period starts and ends on a quarter hour, so that the
    15-minute rollups can count it: the period's ends, and the local boundaries between its
    buckets, which are off one only after a DST gap that ended off one (until 2011, St. John's
    clocks jumped from 00:01 to 01:01: that 01 hour starts at 01:01)."""
    return period.rollup_aligned and _boundaries_on_rollup_grid(period, granularity)


@lru_cache(maxsize=256)
def _boundaries_on_rollup_grid(period: Period, granularity: Granularity) -> bool:
    # Remembered with the bucket starts: an hourly question over 90 days has 2,160 of them.
    starts = _bucket_starts(period, granularity)
    return all(on_rollup_grid(s) for s in starts if period.start < s < period.end)


@lru_cache(maxsize=512)
def parse_zone(name: str) -> ZoneInfo:
    if not name or len(name) > 64 or not ZONE_NAME.fullmatch(name):
        raise BadParams(f"unknown timezone {name[:64]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadParams(f"unknown timezone {name!r}") from None


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local day.

    Where midnight does not exist, the end of the gap; where it happens twice, the first one.
    """
    return _wall_to_utc(datetime.combine(day, time(0)), zone)


def near_range(day: date) -> None:
    """Refuse a date far outside the range, where moving it by a day or an offset may overflow.

    The exact check, in the period's timezone, is ``checked``'s.
    """
    if not EARLIEST.date() - RANGE_MARGIN <= day <= LATEST.date() + RANGE_MARGIN:
        raise BadParams(OUT_OF_RANGE)


def period_of_days(first: date, last: date, zone: ZoneInfo) -> Period:
    """Whole local days ``first`` to ``last``, both included."""
    if first > last:
        raise BadParams("from must not be after to")
    near_range(first)
    near_range(last)
    return checked(Period(day_start(first, zone), day_start(last + timedelta(days=1), zone), zone))


def checked(period: Period) -> Period:
    if period.start >= period.end:
        raise BadParams("from must be before to")
    first, last = (
        t.astimezone(period.zone).replace(tzinfo=None) for t in (period.start, period.end)
    )
    if first < EARLIEST or last > LATEST:
        raise BadParams(OUT_OF_RANGE)
    return period


def bucket_starts(period: Period, granularity: Granularity) -> list[datetime]:
    """Starts of the local buckets overlapping the period, the first one at or before its start.

    Raises BadParams when there would be more than MAX_BUCKETS of them. Remembered for the
    periods asked most recently: a dashboard asks the same ones again and again.
    """
    return list(_bucket_starts(period, granularity))


@lru_cache(maxsize=256)
def _bucket_starts(period: Period, granularity: Granularity) -> tuple[datetime, ...]:
    zone = period.zone
    local_first = period.start.astimezone(zone).replace(tzinfo=None)
    starts: list[datetime] = []
    seen: set[datetime] = set()
    for wall in _WallIter(local_first, granularity):
        for instant in _instants_of(wall, zone, granularity):
            if instant not in seen:
                seen.add(instant)
                starts.append(instant)
        if starts and max(starts) >= period.end:
            break
        if len(starts) > MAX_BUCKETS + 2:
            raise BadParams(
                f"the period holds more than {MAX_BUCKETS} {granularity.value} buckets; "
                "choose a shorter period or a coarser granularity"
            )
    starts.sort()
    # Keep the bucket holding the start, drop those at or past the end.
    first = max(i for i, s in enumerate(starts) if s <= period.start)
    kept = [s for s in starts[first:] if s < period.end]
    if len(kept) > MAX_BUCKETS:
        raise BadParams(f"the period holds more than {MAX_BUCKETS} {granularity.value} buckets")
    return tuple(kept)


def _instants_of(wall: datetime, zone: ZoneInfo, granularity: Granularity) -> tuple[datetime, ...]:
    """The instants where buckets start at a wall-clock boundary.

    An hour that happens twice (clocks falling back) is two hourly buckets. A midnight that
    happens twice (clocks falling back to 00:00, as in Atlantic/Azores or America/Havana) starts
    one day, at its first occurrence: the day is longer by the time repeated (25 hours there).
    """
    first = _wall_to_utc(wall, zone)
    if granularity is not Granularity.HOUR:
        return (first,)
    if first.astimezone(zone).replace(tzinfo=None) != wall:
        return (first,)  # in a gap: fold=1 would name an instant before the gap
    return (first, _wall_to_utc(wall.replace(fold=1), zone))


class _WallIter:
    """Local wall-clock bucket boundaries from the one at or before ``first`` onwards."""

    def __init__(self, first: datetime, granularity: Granularity) -> None:
        self.granularity = granularity
        day = first.date()
        if granularity is Granularity.HOUR:
            # One hour earlier, so a repeated or shifted hour holding ``first`` is included.
            self.current = datetime.combine(day, time(first.hour)) - timedelta(hours=1)
        elif granularity is Granularity.DAY:
            self.current = datetime.combine(day - timedelta(days=1), time(0))
        elif granularity is Granularity.WEEK:
            monday = day - timedelta(days=day.weekday() + 7)
            self.current = datetime.combine(monday, time(0))
        else:
            previous = (day.replace(day=1) - timedelta(days=1)).replace(day=1)
            self.current = datetime.combine(previous, time(0))

    def __iter__(self) -> _WallIter:
        return self

    def __next__(self) -> datetime:
        wall = self.current
        self.current = _next_wall(wall, self.granularity)
        return wall


def _next_wall(wall: datetime, granularity: Granularity) -> datetime:
    if granularity is Granularity.HOUR:
        return wall + timedelta(hours=1)
    if granularity is Granularity.DAY:
        return wall + timedelta(days=1)
    if granularity is Granularity.WEEK:
        return wall + timedelta(days=7)
    year, month = (wall.year + 1, 1) if wall.month == 12 else (wall.year, wall.month + 1)
    return wall.replace(year=year, month=month, day=1)


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant of a wall-clock time; inside a DST gap, the first instant after the gap: where
    a bucket whose start was skipped begins (02:30 on Lord Howe's spring day, 03:45 on Chatham's).
    """
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # In a gap. Read with the offset before it (fold=0), the wall time lands past the gap's end
    # unless it is the gap's first instant (Chatham's 03:00 lands on 04:00, at 02:45 the clocks
    # jump to 03:45); read with the offset after it (fold=1), before the gap.
    return _gap_end(wall.replace(tzinfo=zone, fold=1).astimezone(UTC), instant, zone)


def _gap_end(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clocks jumped, between ``before`` and ``after`` (at or past it); zones
    change their offsets on whole seconds."""
    offset = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
