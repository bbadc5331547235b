"""The committed SDL (graphql_schema/schema.graphql) is the schema the service serves."""

from __future__ import annotations

import difflib
from pathlib import Path

from strawberry.printer import print_schema

import graphql_schema
from app.settings import Settings
from graphql_schema.schema import build_schema, schema

SDL = Path(graphql_schema.__file__).parent / "schema.graphql"
REFRESH = (
    "strawberry export-schema graphql_schema.schema:schema --output graphql_schema/schema.graphql"
)


def test_committed_sdl_is_current() -> None:
    committed = SDL.read_text(encoding="utf-8").rstrip("\n")
    current = print_schema(schema).rstrip("\n")
    if committed != current:
        diff = "\n".join(
            difflib.unified_diff(
                committed.splitlines(),
                current.splitlines(),
                "committed schema.graphql",
                "current schema",
                lineterm="",
                n=1,
            )
        )
        raise AssertionError(
            f"{SDL.name} is stale; refresh it from the repository root with\n"
            f"    {REFRESH}\n"
            "(the command needs `pip install 'strawberry-graphql[cli]'`), then commit it.\n\n"
            + diff
        )


def test_limits_and_introspection_settings_do_not_change_the_sdl() -> None:
    strict = Settings(
        database_url="sqlite+aiosqlite://",
        secret_key="sdl",
        graphql_max_depth=3,
        graphql_max_aliases=1,
        graphql_max_tokens=100,
        graphql_introspection=False,
    )
    assert print_schema(build_schema(strict)) == print_schema(schema)


def test_sdl_names_every_contract_mutation() -> None:
    text = SDL.read_text(encoding="utf-8")
    for mutation in (
        "recordView(input: ViewInput!): RecordResult!",
        "recordSearch(input: SearchInput!): RecordResult!",
        "recordVisit(input: VisitInput!): RecordResult!",
        "recordClick(input: ClickInput!): RecordResult!",
        "recordFeedback(input: FeedbackInput!): RecordResult!",
        "recordEvents(input: [EventInput!]!): [RecordResult!]!",
        "input EventInput @oneOf",
    ):
        assert mutation in text
