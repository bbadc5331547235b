"""Logs as JSON lines: one object per record, carrying the id of the request it belongs to."""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

# Set by the access log for the request being served; records logged meanwhile carry it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
# What a client may send as X-Request-ID and have it kept: a short token, nothing that could
# carry a message (or personal data) into the logs.
WELL_FORMED_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# Fields a record may carry (``extra=``) that the line shows as they are.
FIELDS = ("method", "path", "status", "duration_ms", "client", "route")


def accepted_request_id(sent: bytes | None) -> str:
    """The client's X-Request-ID when well-formed, else a new one."""
    if sent:
        text = sent.decode("latin-1")
        if WELL_FORMED_ID.fullmatch(text):
            return text
    return _new_request_id()


class _RequestIds:
    """32 hex characters: this process's random prefix, then a counter.

    Unique across processes and restarts like a random id, without a system call for
    randomness on every request. An id only needs to be unique: it names a request in the logs
    and proves nothing.
    """

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)  # a forked worker gets its own prefix

    def renew(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


_new_request_id = _RequestIds()


class JsonLines(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", ...}`` on one line."""

    def __init__(self) -> None:
        super().__init__()
        # Each one tuple, replaced whole: safe across threads.
        self._cached_time = (-1, "")
        self._cached_second = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        exception = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            record.__dict__,
            exception=exception,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        fields: Mapping[str, object],
        *,
        exception: str | None = None,
    ) -> str:
        """The line of a record with these attributes (``fields``: its ``extra=`` ones)."""
        line: dict[str, object] = {
            "time": self._time_of(created),
            "level": level,
            "logger": logger,
            "message": message,
            "request_id": fields.get("request_id") or request_id.get(),
        }
        for name in FIELDS:
            value = fields.get(name)
            if value is not None:
                line[name] = value
        if exception is not None:
            line["exception"] = exception
        return orjson.dumps(line, default=str).decode()

    def _time_of(self, created: float) -> str:
        # Lines come many to a millisecond under load: the text is made once for each, and the
        # date and time up to the second once a second (a datetime's ISO text costs more than
        # the rest of the line).
        millisecond = int(created * 1000)
        cached_millisecond, text = self._cached_time
        if millisecond != cached_millisecond:
            second, fraction = divmod(millisecond, 1000)
            cached_second, prefix = self._cached_second
            if second != cached_second:
                prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
                self._cached_second = (second, prefix)
            text = f"{prefix}.{fraction:03d}+00:00"
            self._cached_time = (millisecond, text)
        return text
