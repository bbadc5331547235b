"""Log lines gathered over one turn of the event loop, written together and in order."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

from app.http.log_stream import LoopBatchedStream


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def logger_to(stream: CountingStream) -> tuple[logging.Logger, LoopBatchedStream]:
    handler = LoopBatchedStream(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(f"test.log_stream.{id(stream)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    return log, handler


async def test_lines_of_one_loop_turn_go_out_in_one_write_after_it() -> None:
    stream = CountingStream()
    log, _ = logger_to(stream)
    for n in range(5):
        log.info("line %d", n)
    assert stream.getvalue() == ""  # held until the loop has run what was ready
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.getvalue() == "".join(f"line {n}\n" for n in range(5))
    assert stream.writes == 1
    log.info("next turn")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.getvalue().endswith("line 4\nnext turn\n")
    assert stream.writes == 2


def test_without_a_running_loop_a_line_is_written_at_once() -> None:
    stream = CountingStream()
    log, _ = logger_to(stream)
    log.info("at startup")
    assert stream.getvalue() == "at startup\n"


async def test_a_line_from_another_thread_goes_out_at_once_after_those_waiting() -> None:
    stream = CountingStream()
    log, _ = logger_to(stream)
    log.info("from the loop")
    thread = threading.Thread(target=log.info, args=("from a thread",))
    thread.start()
    thread.join()  # the loop is held meanwhile: its turn has not come
    # Written by the thread with what was waiting first: the order is kept.
    assert stream.getvalue() == "from the loop\nfrom a thread\n"
    assert stream.writes == 1
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.writes == 1  # the loop's turn found nothing left to write


async def test_flush_writes_what_is_waiting() -> None:
    stream = CountingStream()
    log, handler = logger_to(stream)
    log.warning("last words")
    handler.flush()  # what logging.shutdown does at exit
    assert stream.getvalue() == "last words\n"


async def test_once_unbatched_every_line_is_written_at_once() -> None:
    """A worker ending: the signal that ends it may come before the loop's next turn."""
    stream = CountingStream()
    log, handler = logger_to(stream)
    log.info("waiting")
    handler.unbatch()
    assert stream.getvalue() == "waiting\n"  # what was waiting, written now
    log.info("shutting down")
    assert stream.getvalue() == "waiting\nshutting down\n"  # in the loop, yet at once
