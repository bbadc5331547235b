"""Fuzzing a real ``searchstats serve``: schemathesis against the OpenAPI description of the REST
dialects (as served at /openapi.json) and against the GraphQL schema. Whatever it sends, valid or
not: never a 500, never a masked ``internal_error``, and every answer as the description says.

Bounded so the suite stays fast; CI draws the same examples every run (tests/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.generation import GenerationMode

from app.rest.openapi import OPENAPI
from tests.e2e.servers import ServeProcess, searchstats_serve

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Per operation; SEARCHSTATS_FUZZ_EXAMPLES=2000 for a long hunt.
EXAMPLES = int(os.environ.get("SEARCHSTATS_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
TRIED: dict[str, int] = {}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    workdir = tmp_path_factory.mktemp("fuzz")
    env = {
        "SEARCHSTATS_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'fuzz.db'}",
        "SEARCHSTATS_SECRET_KEY": "fuzz-secret",
        "SEARCHSTATS_READ_RATE_LIMIT": "100000/second",
        "SEARCHSTATS_WRITE_RATE_LIMIT": "100000/second",
        "SEARCHSTATS_SQLITE_SYNCHRONOUS": "NORMAL",
    }
    with searchstats_serve(env, workdir, name="fuzz") as served:
        yield served


@pytest.fixture(scope="module")
def credential(server: ServeProcess) -> dict[str, str]:
    created = server.bootstrap()
    assert created is not None, server.output()
    return {"Authorization": f"Token {created[0]}"}


@schemathesis.check
def not_a_server_status(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx. (Schemathesis' own check also takes any GraphQL error for a server's: here a
    client's mistake is answered with a coded error, which is what is wanted.)"""
    assert response.status_code < 500, response.text
    return None


@schemathesis.check
def no_masked_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 200 can hide an unexpected error too: GraphQL masks one as ``internal_error``."""
    if "json" in (response.headers.get("content-type") or [""])[0]:
        body = response.json()
        codes = [e.get("extensions", {}).get("code") for e in _errors(body)]
        assert "internal_error" not in codes, body
    return None


def _errors(body: Any) -> list[dict[str, Any]]:
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


# Loaded from the module the server serves (a test checks they are the same document).
rest = schemathesis.openapi.from_dict(OPENAPI)
rest.config.generation.update(modes=list(GenerationMode), allow_x00=True)
graphql = schemathesis.graphql.from_path(ROOT / "graphql_schema" / "schema.graphql")


def test_the_served_description_is_the_fuzzed_one(server: ServeProcess) -> None:
    assert httpx.get(server.base_url + "/openapi.json", timeout=10).json() == OPENAPI


@rest.parametrize()
@FUZZ
def test_rest_dialects(case: Any, server: ServeProcess, credential: dict[str, str]) -> None:
    TRIED[case.operation.label] = TRIED.get(case.operation.label, 0) + 1
    case.call_and_validate(
        base_url=server.base_url,
        headers=credential,
        timeout=10,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
            no_masked_error,
        ],
    )


@graphql.parametrize()
@FUZZ
def test_graphql(case: Any, server: ServeProcess, credential: dict[str, str]) -> None:
    TRIED[case.operation.label] = TRIED.get(case.operation.label, 0) + 1
    case.call_and_validate(
        base_url=server.base_url + "/graphql",
        headers=credential,
        timeout=10,
        checks=[not_a_server_status, no_masked_error],
    )


def test_the_server_logged_no_unexpected_error(server: ServeProcess) -> None:
    """Run last in this module: whatever the fuzzers sent, nothing was unexpected."""
    log = server.output()
    assert "Traceback" not in log
    assert "unexpected error" not in log
