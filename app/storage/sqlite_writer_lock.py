"""One group-commit writer at a time on a SQLite database, between threads and processes.

SQLite lets one connection write at a time. Another that wants to write is told the database is
busy and retries on SQLite's own back-off: it sleeps 1, 2, 5, 10, 15, 20, 25 ms and on up to
100 ms between tries, whatever happened meanwhile. With several workers on one database, each
committing its batches back to back, a waiting worker keeps missing the short gaps between the
other's batches and climbs that ladder: REST visit with 2 workers read fewer requests/s than with
one and a p99 of 170 to 520 ms (docs/performance.md).

So a batch takes this lock before BEGIN IMMEDIATE and lets it go after COMMIT: an advisory lock
(``flock``) on a file beside the database, ``<database>-writer.lock``, which the kernel lets go
of if the process ends. A writer waiting for it tries again within a millisecond, so batches of
several workers follow one another closely; threads of one process queue on a thread lock first
(``flock`` does not tell them apart). Past the busy timeout the batch fails as SQLite would
("database is locked"). The lock adds to SQLite's locking, it does not replace it: writes that do
not take it (account changes, erasure) are still kept apart by SQLite. Where the file cannot be
made (a read-only folder) or ``flock`` does not exist, batches go without it, as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from app.settings import Settings

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# Between tries for a lock held by another process: from 0.1 ms, doubling, at most 1 ms (a
# batch holds it 1-3 ms).
FIRST_PAUSE, LONGEST_PAUSE = 0.0001, 0.001


class SqliteWriterLock:
    def __init__(self, database_path: str, *, timeout: float) -> None:
        self.path = Path(f"{os.path.abspath(database_path)}-writer.lock")
        self.timeout = timeout
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._unavailable = fcntl is None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Held by this thread alone among this process's threads and the other processes."""
        deadline = time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=self.timeout):
            raise sqlite3.OperationalError("database is locked")
        try:
            fd = self._file()
            if fd is not None:
                _lock(fd, deadline)
            try:
                yield
            finally:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _file(self) -> int | None:
        """The lock file, opened once (called with the thread lock held)."""
        if self._fd is None and not self._unavailable:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as error:
                self._unavailable = True
                log.warning(
                    "Batches on SQLite go without the writer lock file %s (%s): several "
                    "workers on this database wait longer for one another",
                    self.path,
                    error.strerror,
                )
        return self._fd


def _lock(fd: int, deadline: float) -> None:
    pause = FIRST_PAUSE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                raise sqlite3.OperationalError("database is locked") from None
            time.sleep(min(pause, left))
            pause = min(pause * 2, LONGEST_PAUSE)


def writer_lock_for(settings: Settings) -> SqliteWriterLock | None:
    """The lock of the settings' SQLite database file; none for PostgreSQL, or for a database in
    memory, which one connection alone sees."""
    path = settings.sqlite_file
    if path is None:
        return None
    return SqliteWriterLock(str(path), timeout=settings.db_connect_timeout_seconds)
