"""A PostgreSQL server of the test's own (initdb in a temporary folder), to stop and start at will.

The shared server on 127.0.0.1:5432 is never stopped: other runs use it at the same time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.servers import free_port


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries folder, if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclass
class PrivatePostgres:
    bin: Path
    data: Path
    sockets: Path
    port: int
    as_postgres: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1"
        log = self.data.parent / "postgres.log"
        self._pg_ctl("-o", options, "-l", str(log), "-w", "-t", "30", "start")

    def stop_immediately(self) -> None:
        """As on a crash: no shutdown checkpoint, clients cut off at once."""
        self._pg_ctl("-m", "immediate", "-w", "-t", "30", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A running private server, stopped and deleted afterwards whatever happens."""
    binaries = postgres_bin()
    if binaries is None:
        raise FileNotFoundError("no PostgreSQL binaries under /usr/lib/postgresql")
    # Not under pytest's tmp_path: the postgres user could not reach into root's private folder.
    root = Path(tempfile.mkdtemp(prefix="searchstats-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    server = PrivatePostgres(binaries, root / "data", root, free_port(), as_postgres)
    subprocess.run(
        [
            *as_postgres,
            str(binaries / "initdb"),
            *("-D", str(server.data), "-U", "postgres", "-A", "trust", "--no-sync"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            server.stop_immediately()
        shutil.rmtree(root, ignore_errors=True)
