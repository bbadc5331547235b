"""The access line's record: made cheaply, and the same as the one ``logging`` would make."""

from __future__ import annotations

import importlib
import io
import logging
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from app.auth.addresses import ClientAddresses
from app.http import access_log
from app.http.access_log import AccessLog, _access_record, log
from app.http.json_logs import JsonLines
from app.http.log_stream import LoopBatchedStream
from app.services.metrics import Metrics

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


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def answered(scope_path: str) -> None:
    """One request through the access log, to an app that answers 204."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    middleware = AccessLog(
        app, addresses=ClientAddresses(trusted_proxies=[], secret="s"), metrics=Metrics()
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": scope_path,
        "headers": [(b"x-request-id", b"rid-1")],
        "client": ("192.0.2.1", 5000),
    }
    await middleware(scope, receive, send)


class JsonStream:
    """The service's own logging: the root's one handler, JSON lines batched per loop turn."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.text = io.StringIO()
        self.handler = LoopBatchedStream(self.text)
        self.handler.setFormatter(JsonLines())
        self._monkeypatch = monkeypatch

    def alone(self) -> None:
        """Made the root's only handler (called in the test: pytest adds its own before)."""
        self._monkeypatch.setattr(logging.root, "handlers", [self.handler])

    def lines(self) -> list[dict[str, object]]:
        self.handler.flush()
        return [orjson.loads(line) for line in self.text.getvalue().splitlines()]


@pytest.fixture
def json_stream(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonStream]:
    monkeypatch.setattr(log, "handlers", [])
    levels = logging.root.level, log.level
    logging.root.setLevel(logging.INFO)
    log.setLevel(logging.NOTSET)
    yield JsonStream(monkeypatch)
    logging.root.setLevel(levels[0])
    log.setLevel(levels[1])


async def test_the_line_written_directly_is_the_one_its_record_makes(
    json_stream: JsonStream, monkeypatch: pytest.MonkeyPatch
) -> None:
    json_stream.alone()

    def no_record(*_: object) -> logging.LogRecord:
        raise AssertionError("a record was made")

    with monkeypatch.context() as patched:
        patched.setattr(access_log, "_access_record", no_record)
        await answered("/direct")
    [direct] = json_stream.lines()

    captured = Captured()
    log.addHandler(captured)  # another handler: the record is made, and goes to both
    try:
        await answered("/direct")
    finally:
        log.removeHandler(captured)
    [record] = captured.records
    through_record = json_stream.lines()[1]
    assert through_record == orjson.loads(JsonLines().format(record))
    assert set(direct) == set(through_record)
    for name in set(direct) - {"time", "duration_ms"}:
        assert direct[name] == through_record[name], name
    assert str(direct["message"]).startswith("POST /direct 204 ")
    assert direct["request_id"] == "rid-1"


async def test_a_filter_on_the_access_logger_still_sees_every_line(
    json_stream: JsonStream,
) -> None:
    json_stream.alone()
    refused = logging.Filter("nothing.matches")
    log.addFilter(refused)
    try:
        await answered("/filtered")
    finally:
        log.removeFilter(refused)
    assert json_stream.lines() == []  # the filter refused the record: no line went directly
    await answered("/unfiltered")
    assert [line["path"] for line in json_stream.lines()] == ["/unfiltered"]


def test_no_logger_stands_between_the_access_log_and_the_root() -> None:
    """A logger named "searchstats" (made by any module ``serve`` imports) would become the
    access logger's parent, and every access line would be a record again."""
    importlib.import_module("app.cli")  # what serve imports, for their loggers
    importlib.import_module("app.main")
    assert log.parent is logging.root
