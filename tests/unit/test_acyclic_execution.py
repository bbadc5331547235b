"""Operations leave no reference cycles behind: their objects go when they end, not at the next
collection of the cyclic garbage collector, and the resolver helpers still work meanwhile."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator
from typing import Any

import pytest
import strawberry
from graphql import ExecutionResult, Executor, parse
from strawberry.types import Info

from graphql_schema.execution import AcyclicExecutionContext


async def _double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


def _bound_to(helpers: Any) -> Any:
    """The executor the helpers act for (held weakly by their closures)."""
    return helpers.track.__closure__[0].cell_contents()


@strawberry.type
class Query:
    @strawberry.field
    async def doubled(self, info: Info[Any, Any], values: list[int]) -> list[int]:
        helpers = info._raw_info.async_helpers
        helpers.track([1, "not awaitable"])  # nothing to wait for: ignored
        result: list[int] = await helpers.gather([_double(v) for v in values])
        return result


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def counted(self, info: Info[Any, Any]) -> AsyncGenerator[int, None]:
        for value in (1, 2):
            yield value


schema = strawberry.Schema(
    query=Query, subscription=Subscription, execution_context_class=AcyclicExecutionContext
)


async def test_an_operation_leaves_no_cycle(saved_garbage: list[Any]) -> None:
    for _ in range(3):
        result = await schema.execute("query { doubled(values: [1, 2, 3]) }")
        assert result.errors is None
        assert result.data == {"doubled": [2, 4, 6]}
    gc.collect()
    # Freed by reference counting alone: nothing of theirs was left for the collector.
    assert not [o for o in saved_garbage if isinstance(o, Executor)]


async def test_a_subscription_runs_each_event_on_a_copy_bound_to_itself() -> None:
    subscription = await schema.subscribe("subscription { counted }")
    assert not isinstance(subscription, ExecutionResult)
    assert [result.data async for result in subscription] == [{"counted": 1}, {"counted": 2}]

    executor = AcyclicExecutionContext.build(schema._schema, parse("subscription { counted }"))
    assert isinstance(executor, AcyclicExecutionContext)
    event_executor = executor.build_per_event_executor(3)
    assert _bound_to(event_executor.async_helpers) is event_executor
    assert _bound_to(executor.async_helpers) is executor
    assert event_executor.execute_operation(False).data == {"counted": 3}


def test_helpers_kept_past_their_operation_say_so() -> None:
    executor = AcyclicExecutionContext.build(schema._schema, parse("{ doubled(values: []) }"))
    assert isinstance(executor, AcyclicExecutionContext)
    helpers = executor.async_helpers
    del executor
    with pytest.raises(RuntimeError, match="is over"):
        helpers.track([])
