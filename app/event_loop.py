"""The running event loop and its current task, found without a system call.

``asyncio.get_running_loop()`` and ``asyncio.current_task()`` ask the kernel for the process id on
every call (CPython checks that the loop found was not inherited through a fork). Where a system
call is costly, a virtual machine's guest say, those calls on the request path came to 18% of the
event loop's thread serving REST events (docs/performance.md). Here each thread remembers the
loop it last found running in it and keeps answering with it while that loop runs; a forked child
forgets it.

A loop runs in one thread at a time, and a thread runs one loop at a time: a remembered loop that
still runs is this thread's, unless this thread stopped it and another thread runs it now, which
nothing in this service does (each worker runs one loop, in its main thread, for its life).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any


class _Remembered(threading.local):
    loop: asyncio.AbstractEventLoop | None = None


_remembered = _Remembered()


def _forget() -> None:
    global _remembered
    _remembered = _Remembered()


os.register_at_fork(after_in_child=_forget)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, or None."""
    loop = _remembered.loop
    if loop is not None and loop.is_running():
        return loop
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    _remembered.loop = loop
    return loop


def current_task() -> asyncio.Task[Any] | None:
    """The task running in this thread's loop, or None."""
    loop = running_loop()
    return None if loop is None else asyncio.current_task(loop)
