"""Live views last no longer than the credential that opened them.

A subscription is authorized once, when it starts; a JWT's ``exp`` then ends it, with the
``not_authenticated`` code, even while no event arrives. The client reconnects with a fresh token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import TypeVar

from app.auth.principal import Principal
from app.errors import NotAuthenticated

T = TypeVar("T")


async def until_expired(
    source: AsyncGenerator[T, None], principal: Principal
) -> AsyncGenerator[T, None]:
    """The source's items until the principal's credential expires; the source is closed."""
    try:
        if principal.expires_at is None:
            async for item in source:
                yield item
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (principal.expires_at - time.time())
        while True:
            # The deadline covers the wait for the next item only, never the consumer's turn.
            timeout = asyncio.timeout_at(deadline)
            try:
                async with timeout:
                    item = await anext(source)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if timeout.expired():
                    raise NotAuthenticated("The credential has expired") from None
                raise
            yield item
    finally:
        await source.aclose()
