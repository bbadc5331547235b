"""The ``searchstats`` command in-process: what it prints, what it stores, how it fails."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import re
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlmodel import col

from app import cli
from app.auth.keys import KeyVault
from app.cli import main
from app.errors import NotAuthenticated
from app.main import create_app
from app.services.runtime import build_runtime
from app.settings import Settings
from app.storage.database import open_database
from app.storage.migrate import alembic_config
from app.storage.models import Account, ApiKey, Engine
from tests.conftest import set_schema_revision

SECRET = "cli-test-secret"
KEY = re.compile(r"\A[0-9a-f]{40}\n\Z")
HASHID = re.compile(r"\A[0-9a-f]{32}\n\Z")
SHOP = "0123456789abcdef0123456789abcdef"
NEWER = "9999"  # a revision this code does not know: a newer version's


@pytest.fixture
def cli_url(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", empty_database_url)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", SECRET)
    return empty_database_url


@pytest.fixture
def cli_database(cli_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The database made by ``searchstats migrate``, as an operator makes it first."""
    ok(capsys, "migrate")
    return cli_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


def assert_one_line_error(code: int, out: str, err: str, expected: str) -> None:
    assert code != 0
    assert out == ""
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("searchstats: error: "), err
    assert expected in err


def query(url: str, statement: Any) -> list[Any]:
    async def fetch() -> list[Any]:
        database = open_database(Settings(database_url=url, secret_key=SECRET), pooled=False)
        try:
            async with database.sessions() as session:
                return list((await session.execute(statement)).all())
        finally:
            await database.dispose()

    return asyncio.run(fetch())


def dump_every_table(url: str) -> str:
    """Every value of every row of every table, as text."""

    async def dump() -> str:
        database = open_database(Settings(database_url=url, secret_key=SECRET), pooled=False)
        try:
            async with database.engine.connect() as conn:
                names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
                assert {"account", "api_key", "engine", "event", "rollup"} <= set(names)
                rows = [
                    repr(tuple(row))
                    for name in names
                    for row in await conn.execute(text(f'SELECT * FROM "{name}"'))
                ]
        finally:
            await database.dispose()
        return "\n".join(rows)

    return asyncio.run(dump())


def test_migrate(cli_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = ", ".join(ScriptDirectory.from_config(alembic_config()).get_heads())
    code, out, err = run(capsys, "migrate")
    assert (code, out) == (0, "")
    assert err.strip().splitlines()[-1] == f"migrated an empty database to {head}"
    code, out, err = run(capsys, "migrate")  # a second run has nothing to do
    assert (code, out) == (0, "")
    assert err.strip().splitlines()[-1] == "database is up to date"
    assert query(cli_url, select(Account)) == []


@pytest.fixture
def newer_schema(cli_url: str, capsys: pytest.CaptureFixture[str]) -> str:
    """A database migrated by a newer version than this one: its head, then a revision more."""
    ok(capsys, "migrate")
    asyncio.run(set_schema_revision(cli_url, NEWER))
    return cli_url


def revision_of(url: str) -> list[str]:
    return [row[0] for row in query(url, text("SELECT version_num FROM alembic_version"))]


def test_migrate_refuses_a_newer_schema_in_one_line(
    newer_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert_one_line_error(
        *run(capsys, "migrate"),
        f"the database's schema (revision {NEWER}) is newer than this version of searchstats "
        f"knows (head {head}): migrate with the newer version",
    )
    assert revision_of(newer_schema) == [NEWER]


def test_serve_on_a_newer_schema_serves_it_as_it_is(
    newer_schema: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Old code restarted after a newer version migrated (a rolling upgrade, or a rollback):
    no migration down, no traceback; it starts, says so once, and is ready."""
    answered: list[httpx.Response] = []

    async def probe(settings: Settings) -> None:
        runtime = build_runtime(settings)
        await runtime.start()
        try:
            app = create_app(settings, runtime=runtime)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                answered.append(await http.get("/readyz"))
        finally:
            await runtime.stop()

    def uvicorn_instead(_args: argparse.Namespace, settings: Settings) -> None:
        asyncio.run(probe(settings))

    monkeypatch.setattr(cli, "_run_uvicorn", uvicorn_instead)
    with caplog.at_level(logging.WARNING):
        code, out, _ = run(capsys, "serve")

    assert code == 0
    assert "Created account 'default'" in out
    [warning] = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert f"(revision {NEWER}) is newer than this version" in warning.getMessage()
    [ready] = answered
    assert (ready.status_code, ready.json()["checks"]["migrations"]) == (200, "ahead")
    assert revision_of(newer_schema) == [NEWER]


def test_serve_says_when_the_anonymous_engine_does_not_exist(
    cli_url: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every anonymous DSpace event is a 404 meanwhile, and /readyz says ready: said at start."""
    missing = "ab" * 16
    monkeypatch.setenv("SEARCHSTATS_ANONYMOUS_ENGINE", missing)
    monkeypatch.setattr(cli, "_run_uvicorn", lambda _args, _settings: None)
    with caplog.at_level(logging.WARNING):
        assert run(capsys, "serve")[0] == 0
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"SEARCHSTATS_ANONYMOUS_ENGINE names engine {missing}, which does not exist" in warning
    ok(capsys, "engine", "create", "default", "--hashid", missing)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert run(capsys, "serve")[0] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_account_create_works_on_a_newer_schema(
    newer_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "account", "create", "acme")
    assert code == 0
    assert KEY.match(out), repr(out)
    assert revision_of(newer_schema) == [NEWER]


def test_account_create_prints_only_the_key(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "account", "create", "acme")
    assert (code, err) == (0, "")
    assert KEY.match(out), repr(out)
    key = out.strip()

    [(digest, ciphertext)] = query(cli_database, select(col(ApiKey.digest), col(ApiKey.ciphertext)))
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert KeyVault(SECRET).open(ciphertext) == key
    assert KeyVault("another secret").open(ciphertext) is None


def test_engine_create_prints_only_the_hashid(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ok(capsys, "account", "create", "acme")
    first = ok(capsys, "engine", "create", "acme")
    assert HASHID.match(first), repr(first)
    code, out, err = run(capsys, "engine", "create", "acme", "--hashid", SHOP, "--name", "Shop")
    assert (code, out, err) == (0, SHOP + "\n", "")

    engines = query(
        cli_database, select(col(Engine.hashid), col(Engine.name)).order_by(col(Engine.id))
    )
    assert [tuple(row) for row in engines] == [(first.strip(), ""), (SHOP, "Shop")]


def accepted(url: str, *credentials: str) -> list[bool]:
    """Whether a worker started now accepts each credential (as a fresh worker, or one whose
    memory of it is over, does)."""

    async def check() -> list[bool]:
        runtime = build_runtime(Settings(database_url=url, secret_key=SECRET))
        await runtime.start()
        try:
            answers = []
            for credential in credentials:
                try:
                    await runtime.authenticator.authenticate(credential)
                    answers.append(True)
                except NotAuthenticated:
                    answers.append(False)
            return answers
        finally:
            await runtime.stop()

    return asyncio.run(check())


def jwt_of(account: str, key: str) -> str:
    now = int(time.time())
    return "Bearer " + jwt.encode({"iat": now, "exp": now + 600, "name": account}, key, "HS256")


def test_a_key_is_rotated_with_key_create_and_key_revoke(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = ok(capsys, "account", "create", "acme").strip()
    code, out, err = run(capsys, "key", "create", "acme")
    assert (code, err) == (0, "")
    assert KEY.match(out), repr(out)
    new = out.strip()
    # Both keys work, and JWTs signed with either: clients move to the new one at their pace.
    credentials = [f"Token {old}", jwt_of("acme", old), f"Token {new}", jwt_of("acme", new)]
    assert accepted(cli_database, *credentials) == [True] * 4

    assert run(capsys, "key", "revoke", old) == (0, "acme\n", "")
    assert accepted(cli_database, *credentials) == [False, False, True, True]
    [(digest,)] = query(cli_database, select(col(ApiKey.digest)))
    assert digest == hashlib.sha256(new.encode()).hexdigest()


@pytest.mark.parametrize(
    ("setup", "command", "expected"),
    [
        ([], ["engine", "create", "nobody"], "account 'nobody' does not exist"),
        ([], ["key", "create", "nobody"], "account 'nobody' does not exist"),
        ([["account", "create", "acme"]], ["key", "revoke", "0" * 40], "no account has this"),
        (
            [["account", "create", "acme"], ["engine", "create", "acme", "--hashid", SHOP]],
            ["engine", "create", "acme", "--hashid", SHOP],
            f"engine {SHOP} already exists",
        ),
        (
            [
                ["account", "create", "acme"],
                ["account", "create", "globex"],
                ["engine", "create", "acme", "--hashid", SHOP],
            ],
            ["engine", "create", "globex", "--hashid", SHOP],
            f"engine {SHOP} already exists",
        ),
        (
            [["account", "create", "acme"]],
            ["engine", "create", "acme", "--hashid", "abc"],
            "invalid hashid 'abc'",
        ),
        (
            [["account", "create", "acme"]],
            ["engine", "create", "acme", "--hashid", SHOP.upper()],
            "expected 32 lowercase hex characters",
        ),
        (
            [["account", "create", "acme"]],
            ["engine", "create", "acme", "--name", "n" * 256],
            "engine name must be at most 255 characters",
        ),
        ([["account", "create", "acme"]], ["account", "create", "acme"], "already exists"),
        ([], ["account", "create", "two words"], "account name must be"),
        ([], ["account", "create", "--", "-x"], "account name must be"),
        ([], ["account", "create", "a" * 65], "account name must be"),
        ([], ["account", "create", ""], "account name must be"),
        ([], ["account", "create", "caf\u00e9"], "account name must be"),
    ],
    ids=[
        "unknown-account",
        "key-for-unknown-account",
        "revoke-unknown-key",
        "duplicate-hashid",
        "hashid-of-another-account",
        "malformed-hashid",
        "uppercase-hashid",
        "long-engine-name",
        "duplicate-account",
        "space-in-name",
        "leading-dash",
        "long-name",
        "empty-name",
        "non-ascii-name",
    ],
)
def test_errors_are_one_clear_line(
    cli_database: str,
    capsys: pytest.CaptureFixture[str],
    setup: list[list[str]],
    command: list[str],
    expected: str,
) -> None:
    for step in setup:
        ok(capsys, *step)
    assert_one_line_error(*run(capsys, *command), expected)


def test_stored_keys_are_never_plain_text(
    cli_database: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys = [ok(capsys, "account", "create", name).strip() for name in ("acme", "globex")]
    ok(capsys, "engine", "create", "acme")

    dump = dump_every_table(cli_database)
    assert "acme" in dump  # the dump does hold the rows
    for key in keys:
        assert key not in dump
        assert key.upper() not in dump.upper()
    if cli_database.startswith("sqlite"):
        raw = b"".join(path.read_bytes() for path in tmp_path.glob("empty.db*"))
        assert raw
        assert not any(key.encode() in raw for key in keys)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("command", [["migrate"], ["account", "create", "acme"]])
@pytest.mark.parametrize("where", ["postgresql", "sqlite-no-folder", "sqlite-folder"])
def test_unreachable_database_is_one_clear_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
    where: str,
) -> None:
    if where == "postgresql":
        url = f"postgresql+asyncpg://searchstats:hunter2@127.0.0.1:{_closed_port()}/searchstats"
    elif where == "sqlite-no-folder":
        url = f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}"
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", url)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", SECRET)
    monkeypatch.setenv("SEARCHSTATS_DB_CONNECT_TIMEOUT_SECONDS", "2")

    code, out, err = run(capsys, *command)

    assert_one_line_error(code, out, err, "cannot use the database at")
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SEARCHSTATS_DATABASE_URL", "not a url", "SEARCHSTATS_DATABASE_URL must start with"),
        ("SEARCHSTATS_DATABASE_URL", "mysql://u@h/db", "SEARCHSTATS_DATABASE_URL must start with"),
        ("SEARCHSTATS_DB_POOL_SIZE", "0", "invalid setting SEARCHSTATS_DB_POOL_SIZE"),
        # An '@' of the password not encoded: the rest of it was shown as the host.
        (
            "SEARCHSTATS_DATABASE_URL",
            "postgresql+asyncpg://app:s3cr@tpart@127.0.0.1/db",
            "write an '@' of the user name or password as %40",
        ),
        # Each connection has a database in memory of its own: serve printed a key, then stayed
        # unready (migrations pending) and refused it, its pool's connections empty.
        ("SEARCHSTATS_DATABASE_URL", "sqlite+aiosqlite://", "a database in memory"),
        ("SEARCHSTATS_DATABASE_URL", "sqlite+aiosqlite:///:memory:", "a database in memory"),
        # Not a broker the service can use: never quietly each worker on its own.
        (
            "SEARCHSTATS_BROKER_URL",
            "postgresql://h/db",
            "SEARCHSTATS_BROKER_URL: Value error, must",
        ),
        ("SEARCHSTATS_BROKER_URL", "localhost:6379", "SEARCHSTATS_BROKER_URL: Value error, must"),
        # Not a hashid: every anonymous DSpace event was a 400 blaming its client.
        (
            "SEARCHSTATS_ANONYMOUS_ENGINE",
            "AB" * 16,
            "SEARCHSTATS_ANONYMOUS_ENGINE: Value error, must be an engine's hashid",
        ),
    ],
)
def test_bad_settings_are_one_clear_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    expected: str,
) -> None:
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", SECRET)
    monkeypatch.setenv(variable, value)
    assert_one_line_error(*run(capsys, "migrate"), expected)


SECONDS = [name for name in Settings.model_fields if name.endswith("_seconds")]


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("value", ["inf", "nan", "2147484"])
def test_a_duration_the_databases_cannot_hold_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """Past 2**31 - 1 milliseconds PostgreSQL refused every stats question's statement_timeout
    and SQLite's busy timeout became 0 (no wait for the lock at all); inf was a traceback."""
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", SECRET)
    variable = f"SEARCHSTATS_{name.upper()}"
    monkeypatch.setenv(variable, value)
    assert_one_line_error(*run(capsys, "migrate"), f"invalid setting {variable}: ")


@pytest.mark.parametrize("name", SECONDS)
def test_the_longest_duration_is_taken(name: str) -> None:
    assert getattr(Settings.model_validate({name: 2_147_483}), name) == 2_147_483


async def test_the_longest_connect_timeout_is_sqlites_busy_timeout(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'd.db'}",
        secret_key=SECRET,
        db_connect_timeout_seconds=2_147_483,
    )
    database = open_database(settings, pooled=False)
    try:
        async with database.engine.connect() as conn:
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
    finally:
        await database.dispose()
    assert busy == 2_147_483_000


def test_an_empty_anonymous_engine_is_none() -> None:
    assert Settings(anonymous_engine="").anonymous_engine is None
    assert Settings(anonymous_engine="ab" * 16).anonymous_engine == "ab" * 16


def test_an_empty_broker_url_is_the_in_process_broker() -> None:
    assert Settings(broker_url="").broker_url is None
    assert Settings(broker_url="rediss://cache:6380/0").broker_url == "rediss://cache:6380/0"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["serve", "--port", "99999"], "argument --port: must be 1 to 65535"),
        (["serve", "--port", "0"], "argument --port: must be 1 to 65535"),
        (["serve", "--workers", "0"], "argument --workers: must be at least 1"),
        (["prune", "--older-than", "0"], "argument --older-than: must be at least 1"),
    ],
)
def test_an_option_out_of_range_is_refused_before_anything_runs(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    """--port 99999 served on port 34463 (99999 modulo 65536), logging "running on
    http://127.0.0.1:99999". (Parsed only: a command line taken would run.)"""
    with pytest.raises(SystemExit) as refused:
        cli._parser().parse_args(argv)
    assert refused.value.code == 2
    assert expected in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert "serve" in out
    assert "migrate" in out
    assert "``" not in out  # the module's docstring markup was the description


@pytest.mark.parametrize(
    ("group", "commands"),
    [("account", ["create"]), ("key", ["create", "revoke"]), ("engine", ["create"])],
)
def test_a_command_group_alone_prints_its_own_help(
    capsys: pytest.CaptureFixture[str], group: str, commands: list[str]
) -> None:
    """``searchstats key`` printed the help of searchstats, which does not name create or
    revoke."""
    code, out, _ = run(capsys, group)
    assert code == 2
    assert out.startswith(f"usage: searchstats {group} ")
    assert all(f"    {command} " in out for command in commands)


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["import", "nothere.ndjson"],
            "cannot read the import file nothere.ndjson: No such file or directory",
        ),
        (["import", "."], "cannot read the import file .: Is a directory"),
        (
            ["export", "--from", "2025-01-01", "--to", "2025-01-02", "--output", "no/x.ndjson"],
            "cannot write the export file no/x.ndjson: No such file or directory",
        ),
        (
            ["export", "--from", "2000-01-01", "--to", "2030-01-01", "--output", "/dev/full"],
            "cannot write the export file /dev/full: No space left on device",
        ),
    ],
    ids=["import-missing", "import-folder", "export-no-folder", "export-disk-full"],
)
def test_file_errors_name_the_file_not_the_database(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    expected: str,
) -> None:
    if "/dev/full" in command and not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", database_url)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", SECRET)
    ok(capsys, "account", "create", "default")
    ok(capsys, "engine", "create", "default")
    recorded = Path("one.ndjson")
    recorded.write_text('{"search": {"query": "q", "occurredAt": "2025-01-01T10:00:00+00:00"}}\n')
    assert run(capsys, "import", str(recorded))[0] == 0

    code, out, err = run(capsys, *command)

    assert_one_line_error(code, out, err, expected)
    assert "database" not in err


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("secret_file", "expected"),
    [
        (
            ".",
            "cannot read the secret key file {cwd} (SEARCHSTATS_SECRET_KEY_FILE): Is a directory",
        ),
        (
            "no/such/folder/searchstats.secret",
            "cannot create the secret key file {cwd}/no/such/folder/searchstats.secret "
            "(SEARCHSTATS_SECRET_KEY_FILE): No such file or directory",
        ),
    ],
    ids=["a-folder", "in-a-missing-folder"],
)
def test_secret_key_file_errors_name_the_file(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    secret_file: str,
    expected: str,
) -> None:
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", database_url)
    monkeypatch.delenv("SEARCHSTATS_SECRET_KEY", raising=False)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY_FILE", secret_file)
    code, out, err = run(capsys, "account", "create", "acme")
    assert_one_line_error(code, out, err, expected.format(cwd=Path.cwd()))
    assert query(database_url, select(Account)) == []


ADMIN_COMMANDS = {
    "forget-user": ["forget-user", "bob"],
    "prune": ["prune", "--older-than", "30"],
    "account-create": ["account", "create", "acme"],
    "engine-create": ["engine", "create", "default"],
    "import": ["import", "events.ndjson"],
    "export": ["export", "--from", "2025-01-01", "--to", "2025-01-31"],
}


@pytest.mark.parametrize("command", list(ADMIN_COMMANDS.values()), ids=list(ADMIN_COMMANDS))
def test_commands_refuse_a_sqlite_database_that_does_not_exist(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
) -> None:
    """Run outside the service's folder, the default URL names no file: no command but serve
    and migrate makes a new, empty database there and answers from it."""
    monkeypatch.delenv("SEARCHSTATS_DATABASE_URL", raising=False)
    monkeypatch.delenv("SEARCHSTATS_SECRET_KEY", raising=False)
    Path("events.ndjson").write_text('{"search": {"query": "q"}}\n')

    code, out, err = run(capsys, *command)

    assert_one_line_error(code, out, err, f"no database at {tmp_path / 'searchstats.db'}: ")
    assert "SEARCHSTATS_DATABASE_URL" in err
    assert "searchstats migrate creates" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["events.ndjson"]


def test_migrate_creates_the_database_the_other_commands_then_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SEARCHSTATS_DATABASE_URL", raising=False)
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", SECRET)
    assert run(capsys, "forget-user", "bob")[0] == 1

    code, _, err = run(capsys, "migrate")
    assert code == 0, err
    assert (tmp_path / "searchstats.db").is_file()
    assert KEY.match(ok(capsys, "account", "create", "default"))
    assert ok(capsys, "forget-user", "bob") == "0\n"
    assert ok(capsys, "prune", "--older-than", "30") == "0\n"
