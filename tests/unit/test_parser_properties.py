"""Property tests of the parsers between the wire and the domain: whatever a client sends, each
answers a value or ``BadParams``, never another exception (which a door would answer with 500)."""

from __future__ import annotations

import string
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.bounds import parse_doofinder_bound, parse_iso_bound, period_between
from app.domain.events import validate_events
from app.domain.periods import OUT_OF_RANGE, Granularity, bucket_starts
from app.errors import BadParams
from app.rest import dspace, workplace
from app.rest.doofinder import visit_draft
from app.rest.fields import Fields

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = st.sampled_from(["Etc/UTC", "Europe/Madrid", "Asia/Kathmandu", "Australia/Lord_Howe"])
NOW = datetime(2026, 1, 1, tzinfo=UTC)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def objects_with(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects whose keys are mostly the door's own names, with values of any JSON type."""
    key = st.sampled_from(keys) | st.text(max_size=8)
    return st.dictionaries(key, JSON, max_size=len(keys) + 2)


@FAST
@given(st.dictionaries(st.text(max_size=5), JSON, max_size=5), st.text(max_size=5))
def test_fields_read_each_json_type_or_note_a_problem(body: dict[str, Any], key: str) -> None:
    value = body.get(key)
    fields = Fields(body)
    text = fields.text(key)
    integer = fields.integer(key)
    nested = fields.object(key)
    items = fields.objects(key)
    assert text == (value if isinstance(value, str) else None)
    assert integer == (value if isinstance(value, int) and not isinstance(value, bool) else None)
    assert (nested is not None) == isinstance(value, dict)
    assert len(items) == (sum(isinstance(v, dict) for v in value) if isinstance(value, list) else 0)
    # Absent or null is no problem; every other value of a wrong type is one, naming the key.
    assert all(key in message for _, message in fields.problems)
    if value is None:
        assert fields.problems == []


@FAST
@given(objects_with([*dspace.NAMES.values(), "type"]))
def test_dspace_bodies_become_drafts_or_bad_params(body: dict[str, Any]) -> None:
    for read in (dspace.collect_draft, dspace.view_draft, dspace.search_draft):
        _draft_then_rules(read, body)


@FAST
@given(objects_with([*workplace.NAMES.values(), "type"]))
def test_workplace_bodies_become_drafts_or_bad_params(body: dict[str, Any]) -> None:
    _draft_then_rules(workplace.event_draft, body)


@FAST
@given(objects_with(["hashid", "store", "session_id", "user_id", "url", "page_type", "ip"]))
def test_doofinder_bodies_become_drafts_or_bad_params(body: dict[str, Any]) -> None:
    _draft_then_rules(visit_draft, body)


def _draft_then_rules(read: Any, body: dict[str, Any]) -> None:
    """Reading then the rules: every problem found is told (BadParams lists them all)."""
    try:
        validate_events([read(body)], now=NOW)
    except BadParams as error:
        problems = error.details
    else:
        return
    assert problems
    assert all(isinstance(problem, str) and problem for problem in problems)


DIGITS = st.text(alphabet=string.digits, max_size=16)


@FAST
@given(DIGITS | st.text(max_size=20))
def test_doofinder_bounds_are_a_moment_or_bad_params(text: str) -> None:
    try:
        bound = parse_doofinder_bound("from", text)
    except BadParams as error:
        message = error.message
    else:
        assert isinstance(bound, date)
        if len(text) == 10:
            assert bound == datetime.fromtimestamp(int(text), UTC)
        return
    assert message.startswith("from ")


@FAST
@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
def test_doofinder_day_reads_back(day: date) -> None:
    assert parse_doofinder_bound("to", day.strftime("%Y%m%d")) == day


@FAST
@given(
    st.datetimes(
        min_value=datetime(1900, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, ZoneInfo("Europe/Madrid"), None]),
    ),
    ZONES,
)
def test_iso_date_times_read_back_as_the_same_instant(moment: datetime, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    bound = parse_iso_bound("from", moment.isoformat(), zone)
    assert isinstance(bound, datetime)
    # A naive local time that happens twice (the hour repeated when DST ends) is its first.
    expected = moment if moment.tzinfo is not None else moment.replace(tzinfo=zone, fold=0)
    assert bound.timestamp() == expected.timestamp()  # (== is never true across a fold)
    assert bound.tzinfo is UTC


@FAST
@given(st.text(max_size=40), ZONES)
def test_iso_bounds_are_a_moment_or_bad_params(text: str, zone_name: str) -> None:
    try:
        bound = parse_iso_bound("to", text, ZoneInfo(zone_name))
    except BadParams as error:
        message = error.message
    else:
        assert isinstance(bound, date)
        return
    assert message.startswith("to must be an ISO date") or message == OUT_OF_RANGE
    assert len(message) < 500  # whatever was sent, only its start is echoed


MOMENTS = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)) | st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1), timezones=st.just(UTC)
)


@FAST
@given(MOMENTS, MOMENTS, ZONES)
def test_periods_are_ordered_or_bad_params(start: date, end: date, zone_name: str) -> None:
    try:
        period = period_between(start, end, ZoneInfo(zone_name))
    except BadParams:
        return
    assert period.start < period.end
    if not isinstance(start, datetime):
        assert period.start.astimezone(ZoneInfo(zone_name)).date() == start
    if not isinstance(end, datetime):
        last = (period.end - timedelta(microseconds=1)).astimezone(ZoneInfo(zone_name))
        assert last.date() == end


EDGE_ZONES = st.sampled_from(["Etc/UTC", "Pacific/Kiritimati", "Etc/GMT+12", "Asia/Kathmandu"])
AWARE: st.SearchStrategy[tzinfo] = st.sampled_from(
    [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14))]
)
LAST_DAYS, FIRST_DAYS = datetime(9999, 12, 30), datetime(1, 1, 2)
# The whole calendar, and more often its first and last days, where arithmetic on a date
# overflows, and the range's own ends; date-times naive (read in the zone) or with an offset.
ANY_BOUND = (
    st.dates()
    | st.dates(min_value=LAST_DAYS.date())
    | st.dates(max_value=FIRST_DAYS.date())
    | st.dates(min_value=date(1999, 12, 30), max_value=date(2100, 1, 2))
    | st.datetimes()
    | st.datetimes(timezones=AWARE)
    | st.datetimes(min_value=LAST_DAYS)
    | st.datetimes(min_value=LAST_DAYS, timezones=AWARE)
    | st.datetimes(max_value=FIRST_DAYS)
    | st.datetimes(max_value=FIRST_DAYS, timezones=AWARE)
)


@FAST
@given(ANY_BOUND, ANY_BOUND, EDGE_ZONES)
def test_periods_anywhere_in_the_calendar_are_a_period_or_bad_params(
    start: date, end: date, zone_name: str
) -> None:
    """Year 1 to 9999, as a client may write them: a period inside the range, or bad_params
    (never an OverflowError, which a door answered with internal_error)."""
    zone = ZoneInfo(zone_name)
    try:
        period = period_between(
            parse_iso_bound("from", start.isoformat(), zone),
            parse_iso_bound("to", end.isoformat(), zone),
            zone,
        )
        for granularity in Granularity:
            bucket_starts(period, granularity)
    except BadParams:
        return
    assert datetime(1999, 12, 31, tzinfo=UTC) < period.start < period.end
    assert period.end < datetime(2100, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "zone_name"),
    [
        ("9999-12-31", "9999-12-31", "Etc/UTC"),
        ("2025-12-05", "9999-12-31", "Etc/UTC"),
        ("9999-12-31", "9999-12-31", "Pacific/Kiritimati"),
        ("9999-12-31T00:00:00+00:00", "9999-12-31T23:59:59-14:00", "Etc/UTC"),
        ("9999-12-31T00:00:00", "9999-12-31T23:59:59.999999", "Etc/GMT+12"),
        ("0001-01-01", "0001-01-02", "Etc/UTC"),
        ("0001-01-01", "2025-01-01", "Pacific/Kiritimati"),
        ("0001-01-01T00:00:00+14:00", "2025-01-01", "Etc/UTC"),
        ("0001-01-01T00:00:00", "2025-01-01", "Asia/Kathmandu"),
        ("2099-12-31", "2100-01-02", "Etc/UTC"),
    ],
)
def test_periods_at_the_calendars_ends_are_out_of_range(
    start: str, end: str, zone_name: str
) -> None:
    zone = ZoneInfo(zone_name)
    with pytest.raises(BadParams) as refused:
        period_between(parse_iso_bound("from", start, zone), parse_iso_bound("to", end, zone), zone)
    assert refused.value.message == OUT_OF_RANGE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20250230", "from is not a valid date: 20250230"),
        ("19991231", "from must be YYYYMMDD or a UNIX timestamp (10 or 13 digits)"),
        ("", "from must be YYYYMMDD or a UNIX timestamp (10 or 13 digits)"),
        # A regular expression's $ matches before a final line end: the whole text is checked.
        ("20250301\n", "from must be YYYYMMDD or a UNIX timestamp (10 or 13 digits)"),
        ("1700000000\n", "from must be YYYYMMDD or a UNIX timestamp (10 or 13 digits)"),
        ("1700000000000\n", "from must be YYYYMMDD or a UNIX timestamp (10 or 13 digits)"),
    ],
)
def test_doofinder_bound_messages(text: str, expected: str) -> None:
    with pytest.raises(BadParams) as refused:
        parse_doofinder_bound("from", text)
    assert refused.value.message == expected
