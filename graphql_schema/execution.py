"""An execution context that every operation's reference counting can free on its own.

graphql-core's executor hands resolvers helpers (``info.async_helpers``) made of its own bound
methods: the executor holds the helpers, the helpers hold the executor. That cycle keeps each
operation's executor, and everything it refers to (the context, the variables, the collected
fields: some thirty objects a request) alive until the cyclic garbage collector comes by. Under
load those collections came to a fifth of a GraphQL mutation's CPU time, most of it spent
walking the process's long-lived objects (docs/performance.md). Here the helpers refer to their
executor weakly, so an operation's objects go as soon as it ends.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self

from graphql import GraphQLResolveInfoHelpers
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


class AcyclicExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, its resolver helpers bound weakly to it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bind_helpers()

    def __copy__(self) -> Self:
        # graphql-core copies an executor for each event of a subscription: the copy's helpers
        # are its own, as the original's bound methods would have followed it.
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._bind_helpers()
        return clone

    def _bind_helpers(self) -> None:
        if not isinstance(getattr(self, "async_helpers", None), GraphQLResolveInfoHelpers):
            return  # a graphql-core without them: nothing to unbind
        executor = weakref.ref(self)

        def gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
            return _alive(executor).gather_async_work(values)

        def track(values: Sequence[Any]) -> None:
            _alive(executor).track_async_work(values)

        self.async_helpers = GraphQLResolveInfoHelpers(gather=gather, track=track)


def _alive(
    executor: Callable[[], AcyclicExecutionContext | None],
) -> AcyclicExecutionContext:
    alive = executor()
    if alive is None:
        # Its resolvers are running while it executes: only a helper kept past the operation's
        # end gets here, and there is no operation left to add work to.
        raise RuntimeError("the GraphQL operation these helpers belong to is over")
    return alive
