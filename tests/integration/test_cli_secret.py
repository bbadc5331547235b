"""The secret key that seals stored API keys: made once, for a database without keys, found
beside the SQLite database, and refused, in one line, when it cannot open the keys stored."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import col

from app import cli
from app.auth.keys import KeyVault
from app.settings import Settings
from app.storage.models import Account, ApiKey
from tests.integration.test_cli import KEY, assert_one_line_error, ok, query, run

NO_SECRET_KEY = "there is no secret key to open them"
WRONG_SECRET_KEY = "does not open the stored API keys"


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """``searchstats serve`` does all it does before uvicorn; each port it would serve on."""
    ports: list[int] = []

    def serve(args: argparse.Namespace, _settings: Settings) -> None:
        ports.append(args.port)

    monkeypatch.setattr(cli, "_run_uvicorn", serve)
    return ports


@pytest.fixture
def service(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """A migrated database, run without SEARCHSTATS_SECRET_KEY (the secret kept in a file)."""
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", empty_database_url)
    monkeypatch.delenv("SEARCHSTATS_SECRET_KEY", raising=False)
    monkeypatch.delenv("SEARCHSTATS_SECRET_KEY_FILE", raising=False)
    assert run(capsys, "migrate")[0] == 0
    return empty_database_url


def stored_ciphertexts(url: str) -> list[str]:
    return [row[0] for row in query(url, select(col(ApiKey.ciphertext)))]


def test_serve_makes_a_secret_once_then_refuses_one_that_opens_no_stored_key(
    service: str,
    served: list[int],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "searchstats.secret"  # the working folder, also the database's
    first = ok(capsys, "serve")
    assert "api key: " in first
    assert secret_file.stat().st_mode & 0o077 == 0
    [ciphertext] = stored_ciphertexts(service)
    assert f"api key: {KeyVault(secret_file.read_text().strip()).open(ciphertext)}\n" in first
    assert ok(capsys, "serve") == ""  # the same secret: no new account, serving
    assert len(served) == 2

    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", "another secret")
    for command in (["serve"], ["account", "create", "acme"]):
        assert_one_line_error(*run(capsys, *command), WRONG_SECRET_KEY)
    monkeypatch.delenv("SEARCHSTATS_SECRET_KEY")

    secret_file.rename(tmp_path / "lost.secret")
    for command in (["serve"], ["account", "create", "acme"]):
        assert_one_line_error(*run(capsys, *command), NO_SECRET_KEY)
        assert not secret_file.exists()  # never a new secret for a database holding keys

    (tmp_path / "lost.secret").write_text("a changed secret\n")
    shutil.copyfile(tmp_path / "lost.secret", secret_file)
    code, out, err = run(capsys, "serve")
    assert_one_line_error(code, out, err, f"the secret key ({secret_file}) {WRONG_SECRET_KEY}")

    assert len(served) == 2
    assert [row[0] for row in query(service, select(col(Account.name)))] == ["default"]


def test_account_create_uses_the_secret_serve_made(
    service: str, served: list[int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ok(capsys, "serve")
    key = ok(capsys, "account", "create", "acme")
    assert KEY.match(key)
    vault = KeyVault((tmp_path / "searchstats.secret").read_text().strip())
    assert key.strip() in {vault.open(ciphertext) for ciphertext in stored_ciphertexts(service)}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b"\xff\xfe secret", "is not UTF-8 text"),
    ],
    ids=["empty", "blank", "not-utf8"],
)
@pytest.mark.parametrize("command", [["serve"], ["account", "create", "acme"]])
def test_a_secret_key_file_without_a_key_is_refused(
    service: str,
    served: list[int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes,
    expected: str,
    command: list[str],
) -> None:
    secret_file = tmp_path / "searchstats.secret"
    secret_file.write_bytes(content)
    code, out, err = run(capsys, *command)
    assert_one_line_error(code, out, err, f"the secret key file {secret_file} {expected}")
    assert secret_file.read_bytes() == content
    assert stored_ciphertexts(service) == []
    assert served == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_secret_key_file_is_beside_the_sqlite_database(
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Commands run from any folder with the service's URL find the service's secret."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", f"sqlite+aiosqlite:///{data / 'stats.db'}")
    monkeypatch.delenv("SEARCHSTATS_SECRET_KEY", raising=False)
    monkeypatch.delenv("SEARCHSTATS_SECRET_KEY_FILE", raising=False)
    monkeypatch.chdir(data)
    ok(capsys, "migrate")
    ok(capsys, "account", "create", "acme")

    monkeypatch.chdir(elsewhere)
    ok(capsys, "account", "create", "globex")
    assert [path.name for path in elsewhere.iterdir()] == []
    vault = KeyVault((data / "searchstats.secret").read_text().strip())
    assert None not in [vault.open(ciphertext) for ciphertext in stored_ciphertexts_of(data)]

    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY_FILE", str(elsewhere / "named.secret"))
    assert_one_line_error(*run(capsys, "account", "create", "initech"), NO_SECRET_KEY)


def stored_ciphertexts_of(folder: Path) -> list[str]:
    return stored_ciphertexts(f"sqlite+aiosqlite:///{folder / 'stats.db'}")


@pytest.mark.parametrize("backend", ["sqlite"])
def test_import_and_export_make_no_secret_key(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", database_url)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", "the service's secret")
    ok(capsys, "account", "create", "default")
    ok(capsys, "engine", "create", "default")
    monkeypatch.delenv("SEARCHSTATS_SECRET_KEY")
    events = tmp_path / "events.ndjson"
    events.write_text('{"search": {"query": "q", "occurredAt": "2025-01-01T10:00:00+00:00"}}\n')

    assert run(capsys, "import", str(events))[0] == 0
    assert run(capsys, "export", "--from", "2025-01-01", "--to", "2025-01-01")[1].count("\n") == 1
    assert not (tmp_path / "searchstats.secret").exists()
