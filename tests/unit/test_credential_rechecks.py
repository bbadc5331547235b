"""A subscription's stream ends when its connection's credential is refused on a later check,
and only then: a check that could not be made (the database down) leaves it running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable

import pytest

from app.auth.principal import Principal
from app.errors import NotAuthenticated, Unavailable
from app.services import expiry
from app.services.expiry import Recheck, while_credential_holds

ACME = Principal(1, "acme")


class Answers:
    """A credential check whose answers are given in turn; the last one repeats."""

    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.checks = 0

    async def check(self) -> None:
        self.checks += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if answer is not None:
            raise answer


async def ticking(closed: list[bool], every: float = 0.05) -> AsyncGenerator[int, None]:
    try:
        for n in range(1_000_000):
            await asyncio.sleep(every)
            yield n
    finally:
        closed.append(True)


async def silent(closed: list[bool]) -> AsyncGenerator[int, None]:
    try:
        await asyncio.Event().wait()  # no event ever comes
        yield 0
    finally:
        closed.append(True)


async def take(stream: AsyncGenerator[int, None], count: int) -> list[int]:
    return [await anext(stream) for _ in range(count)]


async def drain(stream: AsyncGenerator[int, None], into: list[int]) -> None:
    async for item in stream:
        into.append(item)


@pytest.fixture(autouse=True)
def _fast_rechecks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expiry, "MIN_RECHECK_SECONDS", 0.01)


@pytest.mark.parametrize("source", [ticking, silent])
async def test_a_refused_credential_ends_the_stream_and_closes_its_source(
    source: Callable[[list[bool]], AsyncGenerator[int, None]],
) -> None:
    closed: list[bool] = []
    answers = Answers(None, None, NotAuthenticated("Invalid API key"))
    stream = while_credential_holds(source(closed), ACME, Recheck(0.1, answers.check))
    received: list[int] = []
    with pytest.raises(NotAuthenticated) as refused:
        await asyncio.wait_for(drain(stream, into=received), 5)
    assert str(refused.value) == "The credential is no longer accepted"
    assert answers.checks == 3
    assert closed == [True]
    if source is ticking:
        assert 3 <= len(received) <= 8  # about 0.3 s of items at one each 0.05 s


async def test_a_check_that_could_not_be_made_leaves_the_stream_running() -> None:
    closed: list[bool] = []
    answers = Answers(Unavailable(), RuntimeError("connection reset"), None)
    stream = while_credential_holds(ticking(closed), ACME, Recheck(0.05, answers.check))
    received = await take(stream, 12)
    await stream.aclose()
    assert received == list(range(12))
    assert answers.checks >= 3
    assert closed == [True]


async def test_the_checks_stop_with_the_stream() -> None:
    answers = Answers(None)
    stream = while_credential_holds(ticking([]), ACME, Recheck(0.02, answers.check))
    assert await anext(stream) == 0
    await stream.aclose()
    await asyncio.sleep(0)  # the cancelled check task unwinds
    checks = answers.checks
    await asyncio.sleep(0.1)
    assert answers.checks == checks
    assert not [t for t in asyncio.all_tasks() if "_rechecking" in repr(t.get_coro())]


async def test_without_a_recheck_nothing_is_checked_and_items_flow() -> None:
    closed: list[bool] = []
    stream = while_credential_holds(ticking(closed, every=0.001), ACME)
    assert await take(stream, 5) == [0, 1, 2, 3, 4]
    await stream.aclose()
    assert closed == [True]


@pytest.mark.parametrize("source", [ticking, silent])
async def test_an_expiring_credential_ends_the_stream_at_its_expiry(
    source: Callable[[list[bool]], AsyncGenerator[int, None]],
) -> None:
    closed: list[bool] = []
    answers = Answers(None)
    principal = Principal(1, "acme", expires_at=time.time() + 0.3)
    stream = while_credential_holds(source(closed), principal, Recheck(0.1, answers.check))
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(NotAuthenticated) as ended:
        await asyncio.wait_for(drain(stream, into=[]), 5)
    assert str(ended.value) == "The credential has expired"
    assert 0.25 <= loop.time() - began < 1.5
    assert closed == [True]


async def test_a_consumer_cancelled_from_elsewhere_is_cancelled_not_refused() -> None:
    """The client goes at the moment the credential is refused: its task ends cancelled."""
    closed: list[bool] = []
    consumer: asyncio.Task[None] | None = None

    async def refused_as_the_client_goes() -> None:
        assert consumer is not None
        consumer.cancel()
        raise NotAuthenticated()

    stream = while_credential_holds(silent(closed), ACME, Recheck(0.05, refused_as_the_client_goes))
    consumer = asyncio.create_task(drain(stream, into=[]))
    await asyncio.wait([consumer], timeout=5)
    assert consumer.cancelled()
    assert closed == [True]
