"""Live views last no longer than the credential that opened them.

A subscription is authorized when it starts. A JWT's ``exp`` then ends it, with the
``not_authenticated`` code, even while no event arrives; so does its credential being refused
when checked again (the API key revoked, or the key that signed the JWT):
a websocket checks its credential again every ``SEARCHSTATS_CREDENTIAL_CACHE_SECONDS``, as long
as it runs something. The client reconnects with a valid credential.
"""

from __future__ import annotations

import asyncio
import logging
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
    """What the recheck found, and the wait for the next item it may have to cut short."""

    __slots__ = ("error", "waiting")

    def __init__(self) -> None:
        self.error: NotAuthenticated | None = None
        self.waiting: asyncio.Timeout | None = None

    def refuse(self, error: NotAuthenticated) -> None:
        self.error = error
        if self.waiting is not None:
            self.waiting.reschedule(asyncio.get_running_loop().time())


async def while_credential_holds(
    source: AsyncGenerator[T, None], principal: Principal, recheck: Recheck | None = None
) -> AsyncGenerator[T, None]:
    """The source's items until the principal's credential expires or, checked again with
    ``recheck``, is refused; the source is closed."""
    loop = asyncio.get_running_loop()
    expiry = None
    if principal.expires_at is not None:
        expiry = loop.time() + (principal.expires_at - time.time())
    refusal = _Refusal()
    watch = None if recheck is None else asyncio.create_task(_rechecking(recheck, refusal))
    try:
        while refusal.error is None:
            # The deadline covers the wait for the next item only, never the consumer's turn.
            timeout = asyncio.timeout_at(expiry)
            try:
                async with timeout:
                    refusal.waiting = timeout
                    item = await anext(source)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if not timeout.expired():
                    raise  # the source's own
                if refusal.error is not None:
                    raise refusal.error from None
                raise NotAuthenticated("The credential has expired") from None
            finally:
                refusal.waiting = None
            yield item
        raise refusal.error
    finally:
        if watch is not None:
            watch.cancel()
        await source.aclose()


async def _rechecking(recheck: Recheck, refusal: _Refusal) -> None:
    every = max(recheck.every, MIN_RECHECK_SECONDS)
    while True:
        await asyncio.sleep(every)
        try:
            await recheck.check()
        except NotAuthenticated:
            refusal.refuse(NotAuthenticated("The credential is no longer accepted"))
            return
        except Exception as error:  # the database down, say: the next check decides
            log.debug("credential not checked again: %s", type(error).__name__)
