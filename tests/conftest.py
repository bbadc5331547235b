"""Fixtures: every storage-touching test runs on SQLite and on PostgreSQL, isolated per test.

PostgreSQL is found at ``SEARCHSTATS_TEST_POSTGRES_URL`` (default: the local server). When it does
not answer, its half of the suite is skipped with a clear reason, unless ``CI`` or
``SEARCHSTATS_TEST_REQUIRE_POSTGRES`` is set: then the run fails.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.main import create_app
from app.services import accounts
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from app.storage.database import open_database
from app.storage.migrate import upgrade_to_head

POSTGRES_ADMIN_URL = os.environ.get(
    "SEARCHSTATS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = bool(os.environ.get("CI") or os.environ.get("SEARCHSTATS_TEST_REQUIRE_POSTGRES"))
TABLES = ("rollup_day", "rollup_hour", "rollup", "event", "engine", "api_key", "account")
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
_skipped_backends: list[str] = []

# Property tests and fuzzing draw the same examples on every CI run (CI, or .ci/run's
# SEARCHSTATS_TEST_REQUIRE_POSTGRES), so a failure there is reproducible and a green run stays
# green; locally they explore new examples each time.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if REQUIRE_POSTGRES:
    hypothesis.settings.load_profile("ci")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped_backends:
        terminalreporter.write_line(
            "PostgreSQL half of the suite SKIPPED: " + "; ".join(sorted(set(_skipped_backends))),
            yellow=True,
            bold=True,
        )


async def _postgres_answers(url: str) -> str | None:
    import asyncpg

    target = make_url(url)
    try:
        connection = await asyncio.wait_for(
            asyncpg.connect(
                host=target.host,
                port=target.port or 5432,
                user=target.username,
                password=target.password,
                database=target.database,
            ),
            timeout=3,
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        return f"{type(error).__name__}: {error}"
    await connection.close()
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this run on the PostgreSQL server, migrated once."""
    problem = asyncio.run(_postgres_answers(POSTGRES_ADMIN_URL))
    if problem is not None:
        message = f"PostgreSQL at {make_url(POSTGRES_ADMIN_URL).host} does not answer ({problem})"
        if REQUIRE_POSTGRES:
            pytest.fail(message + " and this run requires it", pytrace=False)
        _skipped_backends.append(message)
        pytest.skip(message)
    admin = make_url(POSTGRES_ADMIN_URL)
    name = f"searchstats_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin_sql(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)
    asyncio.run(_migrate(url))
    yield url
    asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin_sql(statement: str) -> None:
    import asyncpg

    admin = make_url(POSTGRES_ADMIN_URL)
    connection = await asyncpg.connect(
        host=admin.host,
        port=admin.port or 5432,
        user=admin.username,
        password=admin.password,
        database=admin.database,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    database = open_database(Settings(database_url=url, secret_key="test"), pooled=False)
    await upgrade_to_head(database)
    await database.dispose()


async def set_schema_revision(url: str, revision: str) -> None:
    """Mark the database as migrated to ``revision`` (an unknown one: a newer version's)."""
    database = open_database(Settings(database_url=url, secret_key="test"), pooled=False)
    async with database.engine.begin() as connection:
        await connection.execute(
            text("UPDATE alembic_version SET version_num = :revision"), {"revision": revision}
        )
    await database.dispose()


async def _truncate(url: str) -> None:
    database = open_database(Settings(database_url=url, secret_key="test"), pooled=False)
    async with database.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    await database.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test instead of migrating each time."""
    path = tmp_path_factory.mktemp("template") / "searchstats.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database of the test's backend, for this test alone."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "searchstats.db"
        shutil.copyfile(template, target)
        return f"sqlite+aiosqlite:///{target}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(_truncate(url))
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        secret_key="test-secret-key",
        secret_key_file=str(tmp_path / "unused.secret"),
        read_rate_limit="100000/second",
        write_rate_limit="100000/second",
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    built = build_runtime(settings)
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


@dataclass(frozen=True)
class Tenant:
    account: str
    api_key: str
    hashid: str

    @property
    def token(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.api_key}", "User-Agent": BROWSER_UA}


async def make_tenant(runtime: Runtime, name: str) -> Tenant:
    created = await accounts.create_account(
        database=runtime.database, vault=runtime.vault, name=name
    )
    engine = await accounts.create_engine(database=runtime.database, account=name)
    return Tenant(account=name, api_key=created.api_key, hashid=engine.hashid)


@pytest.fixture
async def tenant(runtime: Runtime) -> Tenant:
    return await make_tenant(runtime, "acme")


@pytest.fixture
async def other_tenant(runtime: Runtime) -> Tenant:
    return await make_tenant(runtime, "globex")


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime.settings, runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers={"User-Agent": BROWSER_UA}
    ) as http:
        yield http


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_stray_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run each test in its own directory: nothing lands in the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def empty_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """A brand-new database of the test's backend, without any table, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    request.getfixturevalue("postgres_url")  # skips (or fails) when PostgreSQL does not answer
    name = f"searchstats_empty_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def collated_database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[str]:
    """A migrated database whose text sorts by English rules on PostgreSQL (ICU ``en-US``), as
    on a server initialised in such a locale, dropped afterwards; SQLite has no such setting."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, tmp_path / "collated.db")
        yield f"sqlite+aiosqlite:///{tmp_path / 'collated.db'}"
        return
    request.getfixturevalue("postgres_url")  # skips (or fails) when PostgreSQL does not answer
    name = f"searchstats_collated_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(
        _admin_sql(
            f'CREATE DATABASE "{name}" TEMPLATE template0 '
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
        )
    )
    try:
        url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        asyncio.run(_migrate(url))
        yield url
    finally:
        asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """What the cyclic collector finds unreachable while the test runs, kept for inspection
    (the collector is off meanwhile: what it finds is what reference counting left behind)."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
