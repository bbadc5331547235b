"""How the group commit gathers its batches: a wave is sealed in parts, so the database works
while the rest of it arrives; stragglers of a wave wait for the rest of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest

from app.storage import recorder as recorder_module
from app.storage.database import Database
from app.storage.recorder import SEAL_EVENTS, Recorder
from app.storage.writes import NewEvent, Written

COMMIT_SECONDS = 0.005


class FakeDatabase:
    is_sqlite = False


class Commits:
    """Stands for ``store_batch``: each batch's size, a commit's time, then its answers."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.started = asyncio.Event()

    async def __call__(self, _database: Any, events: Sequence[NewEvent], **_: Any) -> list[Written]:
        self.sizes.append(len(events))
        self.started.set()
        await asyncio.sleep(COMMIT_SECONDS)
        first = sum(self.sizes[:-1])
        return [Written(first + n, False, None) for n in range(len(events))]


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> Commits:
    fake = Commits()
    monkeypatch.setattr(recorder_module, "store_batch", fake)
    return fake


def event() -> NewEvent:
    return cast(NewEvent, object())


@pytest.fixture
async def recorder(commits: Commits) -> AsyncIterator[Recorder]:
    """Started, its batches committed by ``commits``; stopped after the test."""
    started = Recorder(cast(Database, FakeDatabase()), max_batch=1000, flushers=1)
    await started.start()
    yield started
    await started.stop()


async def test_a_wave_goes_in_sealed_parts_while_the_rest_of_it_arrives(
    commits: Commits, recorder: Recorder
) -> None:
    # The flusher wakes only after every request already runnable: without the seal, it would
    # take the whole wave, and every client would wait on that one commit.
    await asyncio.gather(*(recorder.record([event()]) for _ in range(SEAL_EVENTS + 8)))
    assert commits.sizes == [SEAL_EVENTS, 8]


async def test_sealed_batches_waiting_behind_a_commit_share_the_next_one(
    commits: Commits, recorder: Recorder
) -> None:
    first = asyncio.ensure_future(recorder.record([event()]))
    await commits.started.wait()
    behind = [recorder.record([event()]) for _ in range(3 * SEAL_EVENTS + 4)]
    await asyncio.gather(first, *behind)
    assert commits.sizes == [1, 3 * SEAL_EVENTS, 4]


async def test_sealed_batches_share_a_commit_only_within_the_batch_limit(
    commits: Commits,
) -> None:
    limited = Recorder(cast(Database, FakeDatabase()), max_batch=SEAL_EVENTS + 16, flushers=1)
    await limited.start()
    try:
        first = asyncio.ensure_future(limited.record([event()]))
        await commits.started.wait()
        behind = [limited.record([event()]) for _ in range(3 * SEAL_EVENTS + 4)]
        await asyncio.gather(first, *behind)
    finally:
        await limited.stop()
    # Two sealed batches would exceed the limit: each goes alone.
    assert commits.sizes == [1, SEAL_EVENTS, SEAL_EVENTS, SEAL_EVENTS, 4]


async def test_the_batch_limit_holds_below_the_seal(commits: Commits) -> None:
    small = Recorder(cast(Database, FakeDatabase()), max_batch=10, flushers=1)
    await small.start()
    try:
        await asyncio.gather(*(small.record([event()]) for _ in range(25)))
    finally:
        await small.stop()
    assert commits.sizes == [10, 10, 5]


async def test_stragglers_of_a_wave_are_committed_with_the_rest_of_it(
    commits: Commits, recorder: Recorder
) -> None:
    wave = [asyncio.ensure_future(recorder.record([event()])) for _ in range(30)]
    await commits.started.wait()
    # Two requests arrive while the wave's batch commits; the next wave comes as its answers
    # go out.
    stragglers = [asyncio.ensure_future(recorder.record([event()])) for _ in range(2)]
    await asyncio.gather(*wave)
    next_wave = [asyncio.ensure_future(recorder.record([event()])) for _ in range(28)]
    await asyncio.gather(*stragglers, *next_wave)
    assert commits.sizes == [30, 30]  # not 30, then 2, then 28


async def test_a_lone_request_after_a_lone_request_does_not_wait(
    commits: Commits, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "STRAGGLERS_WAIT_SECONDS", 60.0)
    for _ in range(3):
        await asyncio.wait_for(recorder.record([event()]), timeout=5)
    assert commits.sizes == [1, 1, 1]


async def test_a_small_batch_still_goes_when_nothing_more_comes(
    commits: Commits, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "STRAGGLERS_WAIT_SECONDS", 0.05)
    await asyncio.gather(*(recorder.record([event()]) for _ in range(20)))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await recorder.record([event()])  # far smaller than the batch before: it waits, once
    waited = loop.time() - started
    assert commits.sizes == [20, 1]
    assert 0.05 <= waited < 1.0
