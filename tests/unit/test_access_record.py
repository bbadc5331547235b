"""The access line's record: made cheaply, and the same as the one ``logging`` would make."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from app.http import access_log
from app.http.access_log import _access_record, log

FIELDS: dict[str, object] = {
    "request_id": "r1",
    "method": "POST",
    "path": "/api/v2/stats/visit",
    "route": "/api/v2/stats/visit",
    "status": 200,
    "duration_ms": 1.5,
    "client": "c1",
}
MESSAGE = "POST /api/v2/stats/visit 200 1.5ms"
TIMES = ("created", "msecs", "relativeCreated")


def made_by_logging() -> logging.LogRecord:
    return log.makeRecord(
        log.name, logging.INFO, access_log.__file__, 0, MESSAGE, (), None, extra=FIELDS
    )


@pytest.fixture
def lean(monkeypatch: pytest.MonkeyPatch) -> None:
    for flag in ("logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, flag, False)


@pytest.mark.usefixtures("lean")
def test_the_lean_record_holds_what_logging_would_put_in_it() -> None:
    before = time.time()
    record = _access_record(MESSAGE, FIELDS)
    expected = made_by_logging()
    assert set(record.__dict__) == set(expected.__dict__)
    for name, value in expected.__dict__.items():
        if name not in TIMES:
            assert record.__dict__[name] == value, name
    assert before <= record.created <= time.time()
    assert record.msecs == int((record.created % 1) * 1000)
    assert record.getMessage() == MESSAGE


@pytest.mark.usefixtures("lean")
def test_an_ordinary_formatter_formats_it() -> None:
    record = _access_record("GET /100% 200 0.1ms", FIELDS)  # a % in the path is not formatted
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(module)s: %(message)s")
    line = formatter.format(record)
    assert line.endswith("INFO searchstats.access access_log: GET /100% 200 0.1ms")
    assert line.startswith(time.strftime("%Y-"))


def test_a_record_carries_its_thread_when_threads_are_logged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logging, "logThreads", True)
    seen: list[int | None] = []
    thread = threading.Thread(target=lambda: seen.append(_access_record(MESSAGE, FIELDS).thread))
    thread.start()
    thread.join()
    assert seen == [thread.ident]
    assert _access_record(MESSAGE, FIELDS).thread == threading.get_ident()
