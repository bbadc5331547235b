"""Live views last no longer than the credential that opened them.

A subscription is authorized when it starts. A JWT's ``exp`` then ends it, with the
``not_authenticated`` code, even while no event arrives; so does its credential being refused
when checked again (the API key revoked, or the key that signed the JWT): a websocket checks its
credential again every ``SEARCHSTATS_CREDENTIAL_CACHE_SECONDS`` while it runs something. The
client reconnects with a valid credential.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from app.auth.principal import Principal
from app.errors import NotAuthenticated

T = TypeVar("T")
log = logging.getLogger(__name__)

# With no memory of credentials (0 s), a running subscription still checks at most once a second.
MIN_RECHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Recheck:
    """How a connection's credential is checked again while its subscriptions run."""

    every: float
    # Raises NotAuthenticated once the credential is refused.
    check: Callable[[], Awaitable[object]]


class _Refusal:
    """Why the stream must end, and the task waiting for its next item, to be woken for it."""

    __slots__ = ("error", "interrupted", "waiting")

    def __init__(self) -> None:
        self.error: NotAuthenticated | None = None
        self.waiting: asyncio.Task[object] | None = None
        self.interrupted = False

    def refuse(self, error: NotAuthenticated) -> None:
        self.error = error
        if self.waiting is not None:
            # Cut the wait short as asyncio.timeout would, without a timer per item.
            self.interrupted = True
            self.waiting.cancel()


async def while_credential_holds(
    source: AsyncGenerator[T, None], principal: Principal, recheck: Recheck | None = None
) -> AsyncGenerator[T, None]:
    """The source's items until the principal's credential expires or, checked again with
    ``recheck``, is refused; the source is closed.

    The wait for the next item is cut short then, never the consumer's turn. One task watches
    the clock and makes the checks, for the stream's whole life.
    """
    refusal = _Refusal()
    watch = None
    if principal.expires_at is not None or recheck is not None:
        watch = asyncio.create_task(_watching(principal.expires_at, recheck, refusal))
    try:
        while refusal.error is None:
            refusal.waiting = task = asyncio.current_task()
            try:
                item = await anext(source)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                error = refusal.error
                if error is not None and refusal.interrupted and task and task.uncancel() == 0:
                    raise error from None
                raise  # cancelled from elsewhere too: the consumer is going
            finally:
                refusal.waiting = None
            yield item
        raise refusal.error
    finally:
        if watch is not None:
            watch.cancel()
        await source.aclose()


async def _watching(expires_at: float | None, recheck: Recheck | None, refusal: _Refusal) -> None:
    """Refuse the stream at the credential's expiry (a wall-clock instant), or when a check
    refuses it."""
    loop = asyncio.get_running_loop()
    expiry = math.inf if expires_at is None else loop.time() + (expires_at - time.time())
    every = math.inf if recheck is None else max(recheck.every, MIN_RECHECK_SECONDS)
    while True:
        next_check = loop.time() + every
        await asyncio.sleep(min(expiry, next_check) - loop.time())
        if loop.time() >= expiry:
            refusal.refuse(NotAuthenticated("The credential has expired"))
            return
        assert recheck is not None  # woken before the expiry: for a check
        try:
            await recheck.check()
        except NotAuthenticated:
            refusal.refuse(NotAuthenticated("The credential is no longer accepted"))
            return
        except Exception as error:  # the database down, say: the next check decides
            log.debug("credential not checked again: %s", type(error).__name__)
