"""Log lines written once per turn of the event loop, not once per line.

A busy worker logs one access line per request: written and flushed one by one, that is a
``write`` system call per request on the serving thread. Here lines logged from the event loop's
thread gather until the loop has run what was ready, then go out in one write. A line is never
held longer than that turn (a fraction of a millisecond under load); a line logged from any other
thread, or with no loop running (startup, shutdown, the command line), is written at once, with
whatever was waiting before it, so the order of lines is kept. Exit flushes what is left
(``logging.shutdown`` flushes every handler); a worker that may be ended by a signal instead
writes every line at once from its shutdown on (``unbatch_logs``).
"""

from __future__ import annotations

import logging

from app.event_loop import running_loop


class LoopBatchedStream(logging.StreamHandler):  # type: ignore[type-arg]
    def __init__(self, stream: object = None) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._flush_scheduled = False
        self._unbatched = False

    def emit(self, record: logging.LogRecord) -> None:
        # Called with the handler's lock held (Handler.handle).
        try:
            line = self.format(record)
        except Exception:  # logging never raises into the code that logs
            self.handleError(record)
            return
        self._add(line)

    def write_line(self, line: str) -> None:
        """A line already formatted, written as a record's would be (in order with them)."""
        self.acquire()
        try:
            self._add(line)
        finally:
            self.release()

    def _add(self, line: str) -> None:
        self._pending.append(line + self.terminator)
        loop = None if self._unbatched else running_loop()
        if loop is None:
            self._write_pending()  # with what was waiting before it, in order
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self.flush)

    def unbatch(self) -> None:
        """From now on, every line is written at once (what waits is written now)."""
        self.acquire()
        try:
            self._unbatched = True
            self._write_pending()
        finally:
            self.release()

    def flush(self) -> None:
        self.acquire()  # as StreamHandler.flush does: emit and flush never interleave
        try:
            self._flush_scheduled = False
            self._write_pending()
        finally:
            self.release()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:
            # A stream that fails (a closed pipe) must not take the serving thread down.
            self.handleError(logging.makeLogRecord({"msg": text.rstrip()}))


def unbatch_logs() -> None:
    """Lines written at once from here on, for a worker that is ending.

    A worker of ``serve --workers N`` ends killed by the SIGTERM uvicorn raises again once it has
    shut down, while its loop still runs: lines waiting for the loop's next turn (the shutdown's
    own, an error of the last write batch's) would die with it.
    """
    for handler in logging.root.handlers:
        if isinstance(handler, LoopBatchedStream):
            handler.unbatch()
