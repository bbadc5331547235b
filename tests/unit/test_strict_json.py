"""The strict JSON reader: what it refuses, and properties over arbitrary input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.domain.strict_json import MAX_ARRAY_ITEMS, MAX_DEPTH, parse_json
from app.errors import BadParams

# Each hostile body, and the words of the 400 it earns.
HOSTILE: dict[str, tuple[bytes, str]] = {
    "deep-nesting": (b"[" * 5000 + b"]" * 5000, "nests deeper"),
    "nesting-past-the-limit": (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "nests"),
    "huge-integer": (b'{"rank": 123456789012345678901234567890}', "out of range"),
    "integer-past-64-bits": (b'{"rank": 9223372036854775808}', "out of range"),
    "thousands-of-digits": (b'{"rank": ' + b"9" * 5000 + b"}", "out of range"),
    "float-overflow": (b'{"rank": 1e400}', "out of range"),
    "nan": (b'{"rank": NaN}', "not valid JSON"),
    "infinity": (b'{"rank": -Infinity}', "not valid JSON"),
    "lone-high-surrogate": (b'{"query": "\\ud800"}', "lone surrogate"),
    "lone-low-surrogate": (b'{"query": ["x\\udfffy"]}', "lone surrogate"),
    "nul-in-value": (b'{"query": "a\\u0000b"}', "NUL"),
    "nul-in-key": (b'{"\\u0000": 1}', "NUL"),
    "nul-after-escaped-backslash": (b'{"query": "\\\\\\u0000"}', "NUL"),
    "invalid-utf8": (b'{"query": "\xff\xfe"}', "not valid JSON"),
    "utf8-encoded-surrogate": (b'{"query": "\xed\xa0\x80"}', "not valid JSON"),
    "utf16": ('{"query": "x"}'.encode("utf-16"), "not valid JSON"),
    "duplicate-key": (b'{"query": "a", "query": "b"}', "duplicate key 'query'"),
    "nested-duplicate-key": (b'{"page": {"size": 1, "size": 2}}', "duplicate key 'size'"),
    "trailing-garbage": (b'{"query": "a"} {"query": "b"}', "not valid JSON"),
    "trailing-comma": (b'{"query": "a",}', "not valid JSON"),
    "raw-control-character": (b'{"query": "a\x01b"}', "not valid JSON"),
    "byte-order-mark": (b'\xef\xbb\xbf{"query": "a"}', "not valid JSON"),
    "empty": (b"", "empty"),
    "blank": (b" \n\t ", "empty"),
    "too-many-items": (b"[" + b",".join([b"0"] * (MAX_ARRAY_ITEMS + 1)) + b"]", "more than"),
}


@pytest.mark.parametrize(("body", "words"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bodies_are_bad_params(body: bytes, words: str) -> None:
    with pytest.raises(BadParams) as refused:
        parse_json(body)
    assert words in refused.value.message


ACCEPTED: dict[str, tuple[bytes, Any]] = {
    "surrogate-pair": (b'{"q": "\\ud83d\\ude00"}', {"q": "\N{GRINNING FACE}"}),
    "escaped-backslash-then-u0000": (b'{"q": "\\\\u0000"}', {"q": "\\u0000"}),
    "largest-integer": (b'{"n": 9223372036854775807}', {"n": 2**63 - 1}),
    "smallest-integer": (b'{"n": -9223372036854775808}', {"n": -(2**63)}),
    "nesting-at-the-limit": (
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
        json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH),
    ),
    "same-key-in-two-objects": (b'[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
    "whitespace-around": (b' \r\n{"a": 1.5e3}\n', {"a": 1500.0}),
}


@pytest.mark.parametrize(("body", "value"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_valid_bodies_are_read(body: bytes, value: Any) -> None:
    assert parse_json(body) == value


# JSON values without what the reader refuses: finite floats, 64-bit integers, no NUL, few levels.
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=30,
)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(VALUES, st.booleans())
def test_any_valid_document_reads_back_equal(value: Any, ascii_only: bool) -> None:
    """Whatever an ordinary encoder writes (escaped or not) reads back as the same value."""
    assert parse_json(json.dumps(value, ensure_ascii=ascii_only).encode()) == value


@FAST
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_bad_params_or_what_json_reads(body: bytes) -> None:
    try:
        value = parse_json(body)
    except BadParams:
        return
    assert value == json.loads(body)


@FAST
@given(VALUES, st.integers(min_value=0, max_value=60), st.sampled_from(["[", '{"k":']))
def test_nesting_is_refused_past_the_limit_only(leaf: Any, extra: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    document = opener * extra + json.dumps(leaf) + closer * extra
    depth = extra + _depth(leaf)
    if depth > MAX_DEPTH:
        with pytest.raises(BadParams):
            parse_json(document)
    else:
        parse_json(document)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@FAST
@given(st.dictionaries(TEXT, st.integers(-9, 9), min_size=1, max_size=5), st.data())
def test_any_repeated_key_is_refused(members: dict[str, int], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(members)))
    pairs = [*(f"{json.dumps(k)}: {v}" for k, v in members.items()), f"{json.dumps(key)}: 0"]
    with pytest.raises(BadParams, match="duplicate key"):
        parse_json("{" + ", ".join(pairs) + "}")
