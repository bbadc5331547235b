"""The running loop and task, looked up once per thread and loop rather than on every call."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from app import event_loop
from app.event_loop import current_task, running_loop


def test_no_loop_runs_outside_one() -> None:
    assert running_loop() is None
    assert current_task() is None


async def test_the_running_loop_and_task_are_asyncios() -> None:
    assert running_loop() is asyncio.get_running_loop()
    assert current_task() is asyncio.current_task()

    async def inner() -> asyncio.Task[object] | None:
        return current_task()

    task = asyncio.create_task(inner())
    assert await task is task


async def test_asyncio_is_asked_once_while_the_loop_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = 0
    lookup = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        nonlocal asked
        asked += 1
        return lookup()

    monkeypatch.setattr(event_loop, "_remembered", event_loop._Remembered())
    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    for _ in range(100):
        assert running_loop() is lookup()
        assert current_task() is asyncio.current_task(lookup())
    assert asked == 1


def test_a_loop_that_stopped_is_not_answered_for_the_next() -> None:
    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()

    async def found() -> asyncio.AbstractEventLoop | None:
        return running_loop()

    try:
        assert first.run_until_complete(found()) is first
        assert running_loop() is None  # stopped: not running any more
        assert second.run_until_complete(found()) is second
    finally:
        first.close()
        second.close()


async def test_each_thread_finds_its_own_loop() -> None:
    mine = running_loop()
    theirs: list[object] = []

    def in_thread() -> None:
        async def found() -> asyncio.AbstractEventLoop | None:
            return running_loop()

        loop = asyncio.new_event_loop()
        try:
            theirs.append(loop.run_until_complete(found()) is loop)
            theirs.append(running_loop())  # this thread's loop stopped; mine still runs
        finally:
            loop.close()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert theirs == [True, None]
    assert running_loop() is mine is asyncio.get_running_loop()


def test_a_forked_child_forgets_the_parents_loop() -> None:
    async def fork_while_running() -> int:
        assert running_loop() is asyncio.get_running_loop()  # remembered in the parent
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through its exit status
            os._exit(0 if event_loop._remembered.loop is None else 1)
        return child

    loop = asyncio.new_event_loop()
    try:
        child = loop.run_until_complete(fork_while_running())
    finally:
        loop.close()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
