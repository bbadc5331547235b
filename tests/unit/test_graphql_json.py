"""The GraphQL door's JSON out: compact text, for every value a result can hold."""

from __future__ import annotations

import json

from graphql_schema.http import GraphQLDoor
from graphql_schema.schema import schema


def test_results_are_compact_text_and_read_back_the_same() -> None:
    door = GraphQLDoor(schema)
    result = {"data": {"stats": {"clicks": {"totalCount": 3, "rate": 0.25, "name": "ñ"}}}}
    encoded = door.encode_json(result)
    assert isinstance(encoded, str)  # websocket messages must go out as text frames
    assert " " not in encoded
    assert json.loads(encoded) == result


def test_an_integer_beyond_64_bits_is_still_written() -> None:
    door = GraphQLDoor(schema)
    assert json.loads(door.encode_json({"data": {"n": 2**70}})) == {"data": {"n": 2**70}}
