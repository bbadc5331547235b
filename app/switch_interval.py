"""How soon a thread waiting for the interpreter lock gets it: soon enough for SQLite's."""

from __future__ import annotations

import sys

# A worker's other threads wait on I/O: SQLite's connection threads (the group commit's writer,
# a stats read). Each statement they run lets go of the interpreter lock while SQLite works and
# needs it back to go on; while the event loop's thread runs Python, that takes a whole switch
# interval (CPython's default: 5 ms), so a write batch of six statements stretched to several
# milliseconds with the database idle. Measured with bench.compare on SQLite, the REST visit door
# at 0.1 ms against 0.5 ms: 1.10 (docs/performance.md). The event loop's thread hands the lock
# over only when another thread asks for it: a worker on PostgreSQL, with no such thread, is as
# it was.
SWITCH_INTERVAL_SECONDS = 0.0001


def shorten_switch_interval() -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
