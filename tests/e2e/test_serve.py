"""``searchstats serve`` as a real process: bootstrap once, probes, a search over real HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.servers import ServeProcess, searchstats_serve, searchstats_serve_together

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RECORD_SEARCH = """
mutation($input: SearchInput!) { recordSearch(input: $input) { id status duplicate queryId } }"""
ENGINES = "{ engines { hashid isDefault } }"
SEARCH = {"query": "end to end", "resultCount": 3, "eventId": "e2e-1"}


def graphql(served: ServeProcess, authorization: str, query: str, **variables: Any) -> Any:
    with httpx.Client(base_url=served.base_url, trust_env=False, timeout=10) as http:
        response = http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": authorization},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def bearer_jwt(key: str, account: str = "default") -> str:
    now = int(time.time())
    return "Bearer " + jwt.encode(
        {"iat": now, "exp": now + 600, "name": account}, key, algorithm="HS256"
    )


def test_serve_bootstraps_once_and_records_over_http(
    empty_database_url: str, tmp_path: Path
) -> None:
    # No secret configured: serve keeps one in a private file beside the SQLite database (for
    # PostgreSQL, in its working directory): tmp_path either way.
    env = {"SEARCHSTATS_DATABASE_URL": empty_database_url, "SEARCHSTATS_SECRET_KEY": ""}

    with searchstats_serve(env, tmp_path, name="first") as first:
        bootstrap = first.bootstrap()
        assert bootstrap is not None, first.output()
        key, hashid = bootstrap
        with httpx.Client(base_url=first.base_url, trust_env=False, timeout=10) as http:
            assert http.get("/healthz").json() == {"status": "ok"}
            ready = http.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "ready"

        recorded = graphql(first, f"Token {key}", RECORD_SEARCH, input=SEARCH)["recordSearch"]
        assert (recorded["status"], recorded["duplicate"]) == ("registered", False)
        engines = graphql(first, bearer_jwt(key), ENGINES)["engines"]
        assert engines == [{"hashid": hashid, "isDefault": True}]
    assert (tmp_path / "searchstats.secret").stat().st_mode & 0o077 == 0

    with searchstats_serve(env, tmp_path, name="second") as second:
        assert second.bootstrap() is None
        assert "api key" not in second.output()
        # Same key, same secret, same data: the retry is recognised as already stored.
        again = graphql(second, bearer_jwt(key), RECORD_SEARCH, input=SEARCH)["recordSearch"]
        assert again == recorded | {"duplicate": True}


def test_nodes_started_together_on_a_new_database_share_one_secret_and_one_account(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Three ``serve`` started at once on a new database, without a secret: each migrated, made
    a secret and created ``default`` at the same moment as the others. One migrates, makes the
    secret and the account; the others wait for the migrations, read that secret and find the
    account. On SQLite all but one failed ("table alembic_version already exists", or "cannot
    create the secret key file: File exists")."""
    env = {"SEARCHSTATS_DATABASE_URL": empty_database_url, "SEARCHSTATS_SECRET_KEY": ""}
    with searchstats_serve_together(env, tmp_path, count=3) as nodes:
        printed = [node.bootstrap() for node in nodes]
        [(key, hashid)] = [bootstrap for bootstrap in printed if bootstrap is not None]
        for node in nodes:  # the same key and the same secret (its JWTs) on each
            engines = graphql(node, bearer_jwt(key), ENGINES)["engines"]
            assert engines == [{"hashid": hashid, "isDefault": True}]
            assert graphql(node, f"Token {key}", RECORD_SEARCH, input=SEARCH)["recordSearch"]
    assert (tmp_path / "searchstats.secret").stat().st_mode & 0o077 == 0


def test_what_serve_logs_before_serving_is_json_lines_too(
    empty_database_url: str, tmp_path: Path
) -> None:
    """The lines logged while serve prepared (migrations, the missing anonymous engine) were
    plain text, among the JSON lines a log pipeline reads. Only the bootstrap's message, for
    whoever started the service, is not a log line."""
    env = {
        "SEARCHSTATS_DATABASE_URL": empty_database_url,
        "SEARCHSTATS_SECRET_KEY": "logs",
        "SEARCHSTATS_ANONYMOUS_ENGINE": "cd" * 16,
    }
    with searchstats_serve(env, tmp_path) as served:
        output = served.output()
    bootstrap = ("Created account 'default'", "  api key: ", "  hashid:  ")
    lines = [line for line in output.splitlines() if line and not line.startswith(bootstrap)]
    records = [json.loads(line) for line in lines]  # each line a JSON object, or this fails
    [warning] = [r for r in records if "SEARCHSTATS_ANONYMOUS_ENGINE" in r["message"]]
    assert (warning["level"], warning["logger"]) == ("WARNING", "app.cli")
    assert any("Started server process" in r["message"] for r in records)
