"""Storage that cannot serve answers 503 ``unavailable`` with ``Retry-After``, within a bound, and
keeps nothing half-written: a PostgreSQL that accepts connections and never answers, and a
SQLite database that is locked, full or read-only. Once the cause goes, the same runtime serves."""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.main import create_app
from app.services.runtime import Runtime, build_runtime
from app.settings import Settings
from app.storage.outages import is_storage_down
from tests.conftest import Tenant, _admin_sql
from tests.integration.session_ended import end_session_unnoticed

VISIT = {"store": "b0b0a7a5-5b3c-4d7e-8f9a-bb5a7e0f1c2d", "session_id": "s1"}
RECORD = 'mutation { recordVisit(input: {store: "s"}) { id } }'


@dataclass
class Tarpit:
    """A port that accepts TCP connections and never says a word (a hung database host)."""

    port: int
    held: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/searchstats"


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    pit = Tarpit(port=server.getsockname()[1])
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                pit.held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield pit
    finally:
        stop.set()
        thread.join()
        for connection in pit.held:
            connection.close()
        server.close()


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = build_runtime(settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def hung_runtime(tarpit: Tarpit) -> AsyncIterator[Runtime]:
    settings = Settings(
        database_url=tarpit.url, secret_key="test", db_connect_timeout_seconds=1, db_pool_size=2
    )
    async with started(settings) as runtime:
        yield runtime


async def test_a_hung_postgres_is_unavailable_within_the_connect_and_pool_timeouts(
    hung_runtime: Runtime,
) -> None:
    """Twelve requests and a pool of 2 (+2 overflow): four wait on connecting, eight on the
    pool; both waits are bounded by the 1 s setting, none hangs."""
    app = create_app(hung_runtime.settings, runtime=hung_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:

        async def one(n: int) -> tuple[int, str | None, float]:
            started = time.monotonic()
            if n % 2:
                response = await http.post("/graphql", json={"query": RECORD}, headers=_token())
            else:
                response = await http.post("/api/v2/stats/visit", json=VISIT, headers=_token())
            return (
                response.status_code,
                response.headers.get("Retry-After"),
                time.monotonic() - started,
            )

        outcomes = await asyncio.gather(*(one(n) for n in range(12)))
        ready = await http.get("/readyz")
    assert {(status, retry) for status, retry, _ in outcomes} == {(503, "1")}
    slowest = max(seconds for _, _, seconds in outcomes)
    assert slowest < 3, f"slowest answer took {slowest:.2f} s"
    assert ready.status_code == 503


@asynccontextmanager
async def probing(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime.settings, runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as http:
        yield http


async def timed_probe(http: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    started_at = time.monotonic()
    response = await http.get("/readyz")
    return response, time.monotonic() - started_at


async def test_readyz_answers_within_its_bound_while_connecting_hangs(tarpit: Tarpit) -> None:
    """Connecting may take the whole connect timeout (3 s here); the probe answers 503 in its
    0.5 s, and probes at the same time share one check: one connection to the hung host."""
    settings = Settings(
        database_url=tarpit.url,
        secret_key="test",
        db_connect_timeout_seconds=3,
        ready_timeout_seconds=0.5,
    )
    async with started(settings) as runtime, probing(runtime) as http:
        probes = await asyncio.gather(*(timed_probe(http) for _ in range(5)))
        await asyncio.sleep(0.3)  # the tarpit takes connections every 0.1 s
        connections = len(tarpit.held)
    assert max(seconds for _, seconds in probes) < 1.0
    assert {(r.status_code, r.headers.get("Retry-After")) for r, _ in probes} == {(503, "1")}
    assert {r.json()["checks"]["database"] for r, _ in probes} == {
        "unavailable (no answer in 0.5 s)"
    }
    assert connections == 1


class FreezableProxy:
    """A TCP relay to a server that can stop relaying, as when the audit SIGSTOPped its proxy:
    connections stay open, and no byte moves either way until it thaws."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self.frozen = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)

    def __enter__(self) -> FreezableProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()

    def _relay(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            while not self._stop.is_set():
                if self.frozen.is_set():
                    time.sleep(0.01)
                    continue
                for key, _ in selector.select(0.05):
                    if key.fileobj is self._server:
                        client, _address = self._server.accept()
                        upstream = socket.create_connection(self._target)
                        selector.register(client, selectors.EVENT_READ, upstream)
                        selector.register(upstream, selectors.EVENT_READ, client)
                    elif cast(socket.socket, key.fileobj).fileno() >= 0:  # not closed by its peer
                        self._pass(selector, cast(socket.socket, key.fileobj), key.data)
            for key in list(selector.get_map().values()):
                cast(socket.socket, key.fileobj).close()

    @staticmethod
    def _pass(selector: selectors.BaseSelector, source: socket.socket, peer: socket.socket) -> None:
        try:
            data = source.recv(65536)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        for end in (source, peer):
            selector.unregister(end)
            end.close()


async def test_readyz_answers_within_its_bound_when_postgres_stops_answering(
    postgres_url: str,
) -> None:
    """The audit's case: with a pooled connection to a PostgreSQL that stopped answering,
    /readyz took 7 s, then 5 s (the connect timeout). It answers 503 within its bound, and 200
    again once the server answers."""
    target = make_url(postgres_url)
    with FreezableProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        settings = Settings(
            database_url=target.set(port=proxy.port).render_as_string(hide_password=False),
            secret_key="test",
            db_connect_timeout_seconds=2,
            ready_timeout_seconds=0.5,
        )
        async with started(settings) as runtime, probing(runtime) as http:
            assert (await http.get("/readyz")).status_code == 200  # a connection in the pool
            proxy.frozen.set()
            hung = [await timed_probe(http) for _ in range(3)]
            proxy.frozen.clear()
            again = await wait_until_ready(http, within=10)
    assert [r.status_code for r, _ in hung] == [503, 503, 503]
    assert max(seconds for _, seconds in hung) < 1.0
    assert again < 10


async def wait_until_ready(http: httpx.AsyncClient, *, within: float) -> float:
    started_at = time.monotonic()
    while time.monotonic() - started_at < within:
        if (await http.get("/readyz")).status_code == 200:
            break
        await asyncio.sleep(0.1)
    return time.monotonic() - started_at


def _token() -> dict[str, str]:
    return {"Authorization": f"Token {'0' * 40}"}


# ---- SQLite ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"db_connect_timeout_seconds": 0.5})


@pytest.fixture
async def sqlite_runtime(sqlite_settings: Settings) -> AsyncIterator[Runtime]:
    runtime = build_runtime(sqlite_settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def http(sqlite_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(sqlite_runtime.settings, runtime=sqlite_runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as client:
        yield client


def sqlite_path(settings: Settings) -> str:
    return settings.database_url.removeprefix("sqlite+aiosqlite:///")


def event_count(path: str) -> int:
    with sqlite3.connect(path) as connection:
        count: int = connection.execute("SELECT count(*) FROM event").fetchone()[0]
    return count


async def record_through_every_door(http: httpx.AsyncClient, tenant: Tenant) -> list[Any]:
    token = {"Authorization": f"Token {tenant.api_key}"}
    graphql = await http.post("/graphql", json={"query": RECORD}, headers=token)
    rest = await http.post("/api/v2/stats/visit", json=VISIT, headers=token)
    return [
        (graphql.status_code, graphql.headers.get("Retry-After")),
        (rest.status_code, rest.headers.get("Retry-After")),
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_locked_past_busy_timeout_then_free_again(
    http: httpx.AsyncClient, tenant: Tenant, sqlite_settings: Settings
) -> None:
    path = sqlite_path(sqlite_settings)
    before = event_count(path)
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
    try:
        started = time.monotonic()
        refused = await record_through_every_door(http, tenant)
        elapsed = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert refused == [(503, "1"), (503, "1")]
    assert elapsed < 4  # two requests, each bounded by the 0.5 s busy timeout (and a retry)
    assert event_count(path) == before
    assert await record_through_every_door(http, tenant) == [(200, None), (200, None)]
    assert event_count(path) == before + 2


async def reconnect(runtime: Runtime) -> None:
    """New connections for the pool and for the group commit, which keeps its own."""
    await runtime.recorder.stop()
    await runtime.database.engine.dispose()
    await runtime.recorder.start()


@asynccontextmanager
async def connections_opened_read_only(runtime: Runtime) -> AsyncIterator[None]:
    """Every connection of the runtime opened anew, read-only, as SQLite opens a database file
    the process may not write: it stays read-only for its life, however the file's mode
    changes. (The tests run as root, which may write a file of mode 0444: the read-only mode
    is the connection's, as ``query_only``, with the same error.) Connections opened after the
    block write."""
    engine = runtime.database.engine.sync_engine

    def read_only(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    event.listen(engine, "connect", read_only)
    try:
        await reconnect(runtime)
        yield
    finally:
        event.remove(engine, "connect", read_only)


async def fill_the_pools(runtime: Runtime, connections: int) -> None:
    """Each pool (the group commit's too, on PostgreSQL) holds this many connections more,
    opened now, as requests at once open them."""
    async with contextlib.AsyncExitStack() as stack:
        for engine in {runtime.database.engine, runtime.database.writes}:
            for _ in range(connections):
                conn = await stack.enter_async_context(engine.connect())
                await conn.execute(text("SELECT 1"))


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_read_only_then_writable_serves_again_without_a_restart(
    http: httpx.AsyncClient, tenant: Tenant, sqlite_runtime: Runtime, sqlite_settings: Settings
) -> None:
    """The audit's case: the database file was not writable when the service opened it, then
    was again; every write was still 503 until a restart, as the group commit kept writing on
    the connection it had opened read-only. A connection that failed so is thrown away."""
    path = sqlite_path(sqlite_settings)
    await record_through_every_door(http, tenant)  # warm: credentials and engine cached
    before = event_count(path)
    async with connections_opened_read_only(sqlite_runtime):
        await fill_the_pools(sqlite_runtime, 5)
        refused = [await record_through_every_door(http, tenant) for _ in range(2)]
    # The file is writable again: the same runtime serves, no restart.
    served = [await record_through_every_door(http, tenant) for _ in range(2)]
    assert refused == [[(503, "1"), (503, "1")]] * 2
    assert served == [[(200, None), (200, None)]] * 2
    assert event_count(path) == before + 4


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_readyz_is_503_while_the_sqlite_database_is_read_only_and_200_after(
    http: httpx.AsyncClient, tenant: Tenant, sqlite_runtime: Runtime
) -> None:
    """A read-only file answers reads: a probe that only read said ready while every write was
    refused. The probe writes (and rolls back), before any request did, and is ready again
    once the file is writable, without a write of a client's (none comes while unready)."""
    await record_through_every_door(http, tenant)
    async with connections_opened_read_only(sqlite_runtime):
        await fill_the_pools(sqlite_runtime, 5)
        unready = [await http.get("/readyz") for _ in range(2)]
    ready = await http.get("/readyz")
    assert [(r.status_code, r.headers.get("Retry-After")) for r in unready] == [(503, "1")] * 2
    assert unready[0].json()["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "writes": "unavailable (read-only)",
    }
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["writes"] == "ok"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_readyz_is_503_while_another_process_holds_the_sqlite_write_lock(
    http: httpx.AsyncClient, sqlite_settings: Settings
) -> None:
    """In WAL mode reads go on under another process's write lock, so a probe that only read
    said ready while every write waited out the busy timeout and failed. The probe takes the
    write lock as a batch does, within the busy timeout, and lets go of it at once."""
    path = sqlite_path(sqlite_settings)
    assert (await http.get("/readyz")).status_code == 200
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")  # /tmp/audit-dur/holdlock.py
    try:
        locked, seconds = await timed_probe(http)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    free = await http.get("/readyz")
    assert (locked.status_code, locked.headers.get("Retry-After")) == (503, "1")
    assert locked.json()["checks"]["writes"] == "unavailable (locked)"
    assert seconds < 2  # the busy timeout, 0.5 s here
    assert free.status_code == 200


def commits_by_others(path: str) -> Iterator[int]:
    """How many times, so far, a connection other than this one's committed to the file (a
    change of ``PRAGMA data_version``, each time it is asked)."""
    watcher = sqlite3.connect(path, isolation_level=None)
    seen = watcher.execute("PRAGMA data_version").fetchone()[0]
    commits = 0
    try:
        while True:
            now = watcher.execute("PRAGMA data_version").fetchone()[0]
            commits += now != seen
            seen = now
            yield commits
    finally:
        watcher.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_after_a_batch_failed_for_room_readyz_commits_a_write_before_saying_ready(
    http: httpx.AsyncClient, tenant: Tenant, sqlite_runtime: Runtime, sqlite_settings: Settings
) -> None:
    """A full disk shows only in a write that commits (one rolled back writes nothing to disk).
    After a batch failed for a storage reason, the probe commits its write (a row written as it
    is), and is ready again as soon as one commits: not once a client's write has, which a
    worker out of the balancer never gets. Then it rolls its write back again."""
    path = sqlite_path(sqlite_settings)
    await record_through_every_door(http, tenant)
    async with disk_without_room(sqlite_runtime):
        payload = {"store": "x" * 36, "url": "/" + "y" * 4000}
        token = {"Authorization": f"Token {tenant.api_key}"}
        statuses = [
            (await http.post("/api/v2/stats/visit", json=payload, headers=token)).status_code
            for _ in range(30)
        ]
    assert 503 in statuses
    commits = commits_by_others(path)
    next(commits)
    probes = []
    for _ in range(3):
        probes.append(((await http.get("/readyz")).status_code, next(commits)))
    assert probes == [(200, 1), (200, 1), (200, 1)]  # one commit, by the first probe alone
    assert await record_through_every_door(http, tenant) == [(200, None), (200, None)]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_pooled_sqlite_connection_that_was_read_only_is_not_pooled_again(
    sqlite_runtime: Runtime,
) -> None:
    """Writes outside the group commit (an erasure, an account) take the pool's connections:
    one that refused a write as read-only is replaced, and the pool's others with it."""
    database = sqlite_runtime.database
    write = text("UPDATE alembic_version SET version_num = version_num")
    async with connections_opened_read_only(sqlite_runtime):
        with pytest.raises(DBAPIError, match="readonly") as refused:
            async with database.engine.begin() as conn:
                await conn.execute(write)
    async with database.engine.begin() as conn:
        await conn.execute(write)
    assert refused.value.connection_invalidated


@asynccontextmanager
async def disk_without_room(runtime: Runtime) -> AsyncIterator[None]:
    """SQLITE_FULL, as on a full disk, for the connections opened in the block: the file may
    not grow by a single page. There is room again after it, on new connections."""
    engine = runtime.database.engine.sync_engine

    def no_room(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(engine, "connect", no_room)
    await reconnect(runtime)  # each with no room
    try:
        yield
    finally:
        event.remove(engine, "connect", no_room)
        await reconnect(runtime)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_full_disk_then_room_again(
    http: httpx.AsyncClient, tenant: Tenant, sqlite_runtime: Runtime, sqlite_settings: Settings
) -> None:
    path = sqlite_path(sqlite_settings)
    await record_through_every_door(http, tenant)  # warm: credentials and engine cached
    before = event_count(path)
    async with disk_without_room(sqlite_runtime):
        payload = {"store": "x" * 36, "url": "/" + "y" * 4000}
        responses = [
            await http.post(
                "/api/v2/stats/visit",
                json=payload | {"session_id": f"s{n}"},
                headers={"Authorization": f"Token {tenant.api_key}"},
            )
            for n in range(30)
        ]
    statuses = {response.status_code for response in responses}
    assert 503 in statuses, statuses
    assert statuses <= {200, 503}  # the first few may still fit in free pages
    assert all(r.headers["Retry-After"] == "1" for r in responses if r.status_code == 503)
    stored = event_count(path) - before
    assert stored == sum(1 for r in responses if r.status_code == 200)  # nothing half-written
    assert await record_through_every_door(http, tenant) == [(200, None), (200, None)]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_read_only_sqlite_answers_503_on_every_door(
    settings: Settings, tenant: Tenant, runtime: Runtime
) -> None:
    path = sqlite_path(settings)
    read_only = settings.model_copy(
        update={"database_url": f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"}
    )
    reader = build_runtime(read_only)
    await reader.start()
    try:
        app = create_app(read_only, runtime=reader)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            refused = await record_through_every_door(client, tenant)
    finally:
        await reader.stop()
    assert refused == [(503, "1"), (503, "1")]
    assert event_count(path) == 0


@asynccontextmanager
async def database_setting(url: str, name: str, value: str) -> AsyncIterator[None]:
    """The database's own ``name = value`` for the sessions that start in the block."""
    database = make_url(url).database
    await _admin_sql(f'ALTER DATABASE "{database}" SET {name} = {value}')
    try:
        yield
    finally:
        await _admin_sql(f'ALTER DATABASE "{database}" RESET {name}')


def read_only_database(url: str) -> contextlib.AbstractAsyncContextManager[None]:
    """The database refuses writes in the sessions that start in the block (as a standby does,
    or a database put read-only for maintenance); a session keeps that for its life."""
    return database_setting(url, "default_transaction_read_only", "on")


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_postgres_read_only_then_writable_serves_again_without_a_restart(
    tenant: Tenant, settings: Settings
) -> None:
    """A worker that connected while the database took no writes: its writes are 503 (not a
    masked 500), and once the database takes writes again the same worker writes, on
    connections opened anew."""
    async with started(settings) as worker, probing(worker) as http:
        async with read_only_database(settings.database_url):
            await fill_the_pools(worker, 3)
            refused = [await record_through_every_door(http, tenant) for _ in range(2)]
        served = [await record_through_every_door(http, tenant) for _ in range(2)]
    assert refused == [[(503, "1"), (503, "1")]] * 2
    assert served == [[(200, None), (200, None)]] * 2


@asynccontextmanager
async def refusing_connections(url: str) -> AsyncIterator[None]:
    """The database takes no connection in the block (ALTER DATABASE … ALLOW_CONNECTIONS false,
    as for maintenance), and those it had are ended."""
    name = make_url(url).database
    await _admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await _admin_sql(  # waits until they are gone: a write before then would still commit
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    try:
        yield
    finally:
        await _admin_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_postgres_database_taking_no_connections_is_503_then_serves_again(
    tenant: Tenant, settings: Settings
) -> None:
    """Every door answered a masked 500 (internal_error, SQLSTATE 55000 taken for a fault of the
    request): the storage is down, 503 with Retry-After, and served again once it is back."""
    async with started(settings) as worker, probing(worker) as http:
        assert await record_through_every_door(http, tenant) == [(200, None), (200, None)]
        async with refusing_connections(settings.database_url):
            refused = [await record_through_every_door(http, tenant) for _ in range(2)]
            unready = await http.get("/readyz")
        served = await record_through_every_door(http, tenant)
    assert refused == [[(503, "1"), (503, "1")]] * 2
    assert unready.status_code == 503
    assert served == [(200, None), (200, None)]


STATS = '{ stats(from: "2025-01-01", to: "2025-01-02") { searches { totalCount } } }'


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_sessions_the_server_ended_unnoticed_are_replaced_and_every_door_serves(
    tenant: Tenant, settings: Settings
) -> None:
    """The server ended every session while it sat idle, and asyncpg had read its farewell but
    not yet the close (``tests.integration.session_ended``). The group commit's held connection
    refused its batch with asyncpg's own error, which came out raw: an internal error, the
    event not stored, where another connection would have taken it. (The pool's ping already
    replaced the other connections.)"""
    worker = build_runtime(settings)
    drivers: list[Any] = []
    for engine in {worker.database.engine, worker.database.writes}:
        event.listen(
            engine.sync_engine,
            "connect",
            lambda dbapi_connection, _record: drivers.append(dbapi_connection.driver_connection),
        )
    await worker.start()
    try:
        async with probing(worker) as http:
            assert await record_through_every_door(http, tenant) == [(200, None), (200, None)]
            assert (await graphql_stats(http, tenant)).status_code == 200
            opened = len(drivers)
            for driver in drivers:
                end_session_unnoticed(driver)
            served = await record_through_every_door(http, tenant)
            read = await graphql_stats(http, tenant)
            stored = await stored_event_count(worker)
    finally:
        await worker.stop()
    assert served == [(200, None), (200, None)]
    assert read.status_code == 200, read.text
    assert "errors" not in read.json()
    assert stored == 4
    assert len(drivers) > opened  # the ended sessions were replaced by new ones


async def graphql_stats(http: httpx.AsyncClient, tenant: Tenant) -> httpx.Response:
    token = {"Authorization": f"Token {tenant.api_key}"}
    return await http.post("/graphql", json={"query": STATS}, headers=token)


async def stored_event_count(runtime: Runtime) -> int:
    async with runtime.database.engine.connect() as conn:
        count: int = (await conn.execute(text("SELECT count(*) FROM event"))).scalar_one()
    return count


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_readyz_is_503_while_postgres_is_read_only_and_200_after(
    tenant: Tenant, settings: Settings
) -> None:
    """A standby, or a database put read-only, answers reads: a probe that only read said
    ready. The probe asks whether its session is read-only (taking no lock), and is ready again
    once the database takes writes, on connections opened anew."""
    async with started(settings) as worker, probing(worker) as http:
        assert (await http.get("/readyz")).status_code == 200  # a read-write connection pooled
        async with read_only_database(settings.database_url):
            await worker.database.engine.dispose()  # sessions start read-only from here
            await fill_the_pools(worker, 3)
            unready = [await http.get("/readyz") for _ in range(2)]
        ready = await http.get("/readyz")
    assert [(r.status_code, r.headers.get("Retry-After")) for r in unready] == [(503, "1")] * 2
    assert unready[0].json()["checks"]["writes"] == "unavailable (read-only)"
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_after_a_batch_failed_on_postgres_readyz_commits_a_write_before_saying_ready(
    runtime: Runtime, tenant: Tenant, settings: Settings
) -> None:
    """A batch that failed for a storage reason (here past the write deadline, behind another
    session's lock) makes the next probe commit its write, once, instead of asking whether the
    session is read-only: a full disk refuses only what is written."""
    quick = settings.model_copy(update={"db_write_timeout_seconds": 0.5})

    async def version_row() -> str:  # the row's xmin: a new one at each committed update
        async with runtime.database.engine.connect() as conn:
            xmin: str = (
                await conn.execute(text("SELECT xmin::text FROM alembic_version"))
            ).scalar_one()
            return xmin

    async with started(quick) as worker, probing(worker) as http:
        token = {"Authorization": f"Token {tenant.api_key}"}
        assert (
            await http.post("/api/v2/stats/visit", json=VISIT, headers=token)
        ).status_code == 200
        async with runtime.database.engine.connect() as locker:
            await locker.execute(text("LOCK TABLE event IN EXCLUSIVE MODE"))
            refused = await http.post("/api/v2/stats/visit", json=VISIT, headers=token)
            await locker.rollback()
        rows = [await version_row()]
        for _ in range(2):
            assert (await http.get("/readyz")).status_code == 200
            rows.append(await version_row())
    assert refused.status_code == 503
    assert rows[0] != rows[1] == rows[2]  # committed by the first probe alone


def statement_timeout(url: str, milliseconds: int) -> contextlib.AbstractAsyncContextManager[None]:
    """The database cancels any statement of the sessions that start in the block after
    ``milliseconds`` (a ``statement_timeout`` on the database or the role, as many set)."""
    return database_setting(url, "statement_timeout", str(milliseconds))


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_statement_the_server_cancels_is_503_then_served_again(
    tenant: Tenant, settings: Settings
) -> None:
    """A database's statement_timeout, shorter than the write deadline, cancelled a write batch
    blocked behind another session's lock, and the lookup of a credential blocked as well:
    PostgreSQL's query_canceled (57014) was taken for a fault of the request, a masked 500
    (internal_error). It is a database that cannot serve now: 503 with Retry-After."""
    uncached = settings.model_copy(update={"credential_cache_seconds": 0})
    refused: list[list[Any]] = []
    async with (
        statement_timeout(settings.database_url, 300),
        started(uncached) as worker,
        probing(worker) as http,
    ):
        assert await record_through_every_door(http, tenant) == [(200, None), (200, None)]
        for table in ("event", "api_key"):
            async with worker.database.engine.connect() as locker:
                await locker.execute(text("SET LOCAL statement_timeout = 0"))
                await locker.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                refused.append(await record_through_every_door(http, tenant))
                await locker.rollback()
        served = await record_through_every_door(http, tenant)
        ready = await http.get("/readyz")
    assert refused == [[(503, "1"), (503, "1")]] * 2
    assert served == [(200, None), (200, None)]
    assert ready.status_code == 200, ready.text


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "down"),
    [
        ("57P03", True),
        ("57P01", True),
        ("08006", True),
        ("53300", True),
        ("53100", True),  # disk full
        ("25006", True),  # read-only: a standby, default_transaction_read_only
        ("55000", True),  # the database takes no connections (ALLOW_CONNECTIONS false)
        ("3D000", True),  # the database is gone (dropped, renamed)
        ("57P04", True),
        ("57014", True),  # a statement cancelled: statement_timeout, pg_cancel_backend
        ("57P05", True),  # idle_session_timeout
        ("55P03", True),  # lock_timeout
        ("28P01", True),  # the login is refused: the password changed
        ("42P01", False),
        ("23505", False),
        ("22001", False),
    ],
)
def test_postgres_states_that_mean_retry_later(sqlstate: str, down: bool) -> None:
    error = DBAPIError("SELECT 1", {}, _Orig(sqlstate))
    assert is_storage_down(error) is down


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_requests_are_answered_within_their_bounds_when_postgres_stops_answering(
    settings: Settings, tenant: Tenant
) -> None:
    """With pooled connections to a PostgreSQL that stopped answering (a network stall), a
    stats question and the lookup of a credential waited for as long as it lasted: the pool's
    ping and the statements of the main pool have no deadline of their own, and the stats
    deadline is the server's statement_timeout. Each is a 503 within the bounds of its
    settings, and served again once the server answers."""
    target = make_url(settings.database_url)
    with FreezableProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
        proxied = settings.model_copy(
            update={
                "database_url": target.set(port=proxy.port).render_as_string(hide_password=False),
                "db_connect_timeout_seconds": 1,
                "stats_timeout_seconds": 1,
                "credential_cache_seconds": 0,
            }
        )
        async with started(proxied) as worker, probing(worker) as http:
            token = {"Authorization": f"Token {tenant.api_key}"}
            assert (await graphql_stats(http, tenant)).status_code == 200  # pooled connections
            proxy.frozen.set()
            thaw = asyncio.get_running_loop().call_later(8, proxy.frozen.clear)
            try:
                hung = await asyncio.gather(
                    timed(graphql_stats(http, tenant)),
                    timed(http.post("/api/v2/stats/visit", json=VISIT, headers=token)),
                )
            finally:
                thaw.cancel()
                proxy.frozen.clear()
            await wait_until_ready(http, within=10)
            served = await graphql_stats(http, tenant)
    assert [status for status, _ in hung] == [503, 503], hung
    assert max(seconds for _, seconds in hung) < 3, hung
    assert served.status_code == 200, served.text
    assert "errors" not in served.json(), served.text


async def timed(request: Awaitable[httpx.Response]) -> tuple[int, float]:
    started_at = time.monotonic()
    response = await request
    return response.status_code, time.monotonic() - started_at
