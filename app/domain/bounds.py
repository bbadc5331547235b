"""The ends of a period as clients write them: ISO dates and date-times, YYYYMMDD, epochs."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from app.domain.periods import OUT_OF_RANGE, Period, checked, day_start, near_range
from app.errors import BadParams

YYYYMMDD = re.compile(r"^(20\d{2})(\d{2})(\d{2})$")
EPOCH_SECONDS = re.compile(r"^\d{10}$")
EPOCH_MILLIS = re.compile(r"^\d{13}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Bound = date | datetime


def parse_iso_bound(name: str, text: str, zone: ZoneInfo) -> Bound:
    """An ISO date (a whole local day) or an ISO date-time (naive ones read in ``zone``)."""
    text = text.strip()
    try:
        if ISO_DATE.fullmatch(text):
            return date.fromisoformat(text)
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise BadParams(f"{name} must be an ISO date or date-time, not {text[:40]!r}") from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=zone)
    try:
        return instant.astimezone(UTC)
    except OverflowError:  # at the calendar's ends: year 1 east of UTC, 9999 west of it
        raise BadParams(OUT_OF_RANGE) from None


def parse_doofinder_bound(name: str, text: str) -> Bound:
    """Doofinder's ``from``/``to``: YYYYMMDD, or a UNIX timestamp in seconds or milliseconds."""
    if match := YYYYMMDD.fullmatch(text):
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            raise BadParams(f"{name} is not a valid date: {text}") from None
    if EPOCH_SECONDS.fullmatch(text):
        return datetime.fromtimestamp(int(text), UTC)
    if EPOCH_MILLIS.fullmatch(text):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    raise BadParams(f"{name} must be YYYYMMDD or a UNIX timestamp (10 or 13 digits)")


def period_between(start: Bound, end: Bound, zone: ZoneInfo) -> Period:
    """Dates cover whole local days, ``to`` included; date-times are instants, ``to`` excluded."""
    for bound in (start, end):
        near_range(bound.date() if isinstance(bound, datetime) else bound)
    lower = day_start(start, zone) if not isinstance(start, datetime) else start
    upper = end if isinstance(end, datetime) else day_start(end + timedelta(days=1), zone)
    if lower >= upper:
        raise BadParams("from must be before to")
    return checked(Period(lower, upper, zone))
