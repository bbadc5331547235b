"""A SQLite database that answers reads but refuses writes, under a real ``searchstats serve``:
a file the process may not write, and a full disk. Writes are 503 and ``/readyz`` is 503
meanwhile; once the file is writable, or the disk has room, the same process is ready and
writes again, with no restart and no client write needed first.

The tests run as root, which writes any file whatever its mode: the server runs without the
capabilities that let it (``setpriv``), as a service user would. The full disk is a small tmpfs
of the server's own (a private mount namespace: ``unshare``), which the test fills and empties
through ``/proc/PID/root``.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.services.runtime import build_runtime
from app.settings import Settings
from tests.conftest import Tenant, make_tenant
from tests.e2e.servers import ServeProcess, searchstats_serve

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SECRET = "refused-writes"
VISIT = {"store": "b0b0a7a5-5b3c-4d7e-8f9a-bb5a7e0f1c2d", "session_id": "s1"}
# Root without the capabilities that let it write or read any file, and change their modes.
UNPRIVILEGED = (
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search,-fowner",
    "--inh-caps=-dac_override,-dac_read_search,-fowner",
)
TMPFS_BYTES = 4 * 1024 * 1024
# In a mount namespace of its own: a tmpfs over $1 holding a copy of the database $2, then the
# command after them, exec'd (the server keeps the pid the test knows).
PRIVATE_MOUNTS = ("unshare", "--mount", "--propagation", "private")
ON_ITS_OWN_TMPFS = (
    *PRIVATE_MOUNTS,
    "sh",
    "-c",
    f'mount -t tmpfs -o size={TMPFS_BYTES} tmpfs "$1" && cp "$2" "$1/s.db" && shift 2 && exec "$@"',
    "sh",
)


def environment(database: Path) -> dict[str, str]:
    return {
        "SEARCHSTATS_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "SEARCHSTATS_SECRET_KEY": SECRET,
        "SEARCHSTATS_DB_CONNECT_TIMEOUT_SECONDS": "1",
        "SEARCHSTATS_LOG_FORMAT": "text",
    }


def seeded(template: Path, database: Path) -> Tenant:
    """A copy of the migrated template holding an account and its engine."""
    shutil.copyfile(template, database)

    async def seed() -> Tenant:
        runtime = build_runtime(
            Settings(database_url=f"sqlite+aiosqlite:///{database}", secret_key=SECRET)
        )
        await runtime.start()
        try:
            return await make_tenant(runtime, "acme")
        finally:
            await runtime.stop()

    return asyncio.run(seed())


def visit(http: httpx.Client, tenant: Tenant) -> int:
    headers = {"Authorization": f"Token {tenant.api_key}"}
    return http.post("/api/v2/stats/visit", json=VISIT, headers=headers).status_code


def readyz(http: httpx.Client) -> tuple[int, str | None]:
    answer = http.get("/readyz")
    return answer.status_code, answer.json()["checks"].get("writes")


def ready_within(http: httpx.Client, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if http.get("/readyz").status_code == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not ready {seconds} s after the database took writes again")


def runs(*command: str) -> bool:
    """The command can be run here, and succeeds."""
    try:
        return subprocess.run(command, capture_output=True, check=False).returncode == 0
    except OSError:  # not installed
        return False


def http_of(server: ServeProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, trust_env=False, timeout=20)


def test_a_read_only_file_then_writable_again(sqlite_template: Path, tmp_path: Path) -> None:
    """The audit's case, as it ran it: the file is read-only when the server opens it (SQLite
    then opens it read-only, for the connection's life). The server starts (reads work) and
    writes are 503; /readyz said ready meanwhile, and once the file was writable again writes
    were still 503, until a restart."""
    wrapper: tuple[str, ...] = ()
    if os.geteuid() == 0:
        if not runs(*UNPRIVILEGED, "true"):
            pytest.skip("running as root, and setpriv cannot give up its rights here")
        wrapper = UNPRIVILEGED
    data = tmp_path / "data"
    data.mkdir()
    database = data / "s.db"
    tenant = seeded(sqlite_template, database)
    database.chmod(0o444)
    with (
        searchstats_serve(
            environment(database), tmp_path, wrapper=wrapper, ready_path="/healthz"
        ) as server,
        http_of(server) as http,
    ):
        unready = readyz(http)
        refused = visit(http, tenant)
        still_unready = readyz(http)
        for path in data.glob("s.db*"):
            path.chmod(0o644)
        recovered = ready_within(http, 10)
        served = visit(http, tenant)
    print(f"read-only: ready again {recovered:.1f} s after the file was writable")
    assert unready == (503, "unavailable (read-only)"), server.output()
    assert (refused, still_unready) == (503, (503, "unavailable (read-only)"))
    assert served == 200, server.output()


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to its last byte; the file that does it."""
    filler = folder / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            while True:
                try:
                    if os.write(descriptor, b"\0" * size) < size:
                        break
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(descriptor)
    return filler


# Opens the database, reads, says so, and keeps it open until its standard input closes.
READER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1])
connection.execute("SELECT count(*) FROM event").fetchone()
print("open", flush=True)
sys.stdin.read()
"""


@contextmanager
def another_process_reading(server: ServeProcess, database: Path) -> Iterator[None]:
    """A process with the database open, in the server's mount namespace (SQLite resolves the
    symbolic link /proc/PID/root is, so the test's own process would open another file)."""
    command = ["nsenter", "--target", str(server.process.pid), "--mount"]
    with subprocess.Popen(
        [*command, sys.executable, "-c", READER, str(database)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as reader:  # its standard input closed on the way out: it ends
        assert reader.stdout is not None
        assert reader.stdout.readline() == b"open\n"
        yield


def test_a_full_disk_then_room_again(sqlite_template: Path, tmp_path: Path) -> None:
    """A full disk refuses only what must be written to it: reads, and a write rolled back,
    go on. /readyz is 503 from the first batch that fails for it until the disk has room for
    a write again, which readiness finds by committing one of its own (no client writes to a
    worker taken out of the balancer)."""
    data = tmp_path / "data"
    data.mkdir()
    if not (
        shutil.which("nsenter") and runs(*PRIVATE_MOUNTS, "mount", "-t", "tmpfs", "t", str(data))
    ):
        pytest.skip("cannot mount a tmpfs in a mount namespace of its own here (root, unshare)")
    seed = tmp_path / "seed.db"
    tenant = seeded(sqlite_template, seed)
    wrapper = (*ON_ITS_OWN_TMPFS, str(data), str(seed))
    with (
        searchstats_serve(environment(data / "s.db"), tmp_path, wrapper=wrapper) as server,
        http_of(server) as http,
    ):
        assert visit(http, tenant) == 200
        its_data = Path(f"/proc/{server.process.pid}/root{data}")  # the server's tmpfs
        assert not (data / "s.db").exists()  # not this process's folder
        # Another process has the database open (a second worker, a backup): the server's
        # connections are not the last, whose closing would checkpoint the log and delete it,
        # making room for a while.
        with another_process_reading(server, data / "s.db"):
            filler = _fill(its_data)
            ready_before = readyz(http)  # a write rolled back does not touch the disk
            refused = [visit(http, tenant) for _ in range(3)]
            unready = [readyz(http) for _ in range(3)]
            filler.unlink()
            recovered = ready_within(http, 10)
            served = visit(http, tenant)
    print(f"full disk: ready again {recovered:.1f} s after there was room")
    assert refused == [503, 503, 503], server.output()
    assert unready == [(503, "unavailable (full)")] * 3, server.output()
    assert served == 200, server.output()
    assert ready_before == (200, "ok")  # seen by the first write that fails, not before
