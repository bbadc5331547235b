"""Strawberry's extension runner, calling the operation guards straight away.

For every operation Strawberry builds each extension anew, then for each of five stages a context
manager that inspects each hook of each extension, wraps it in a ``contextlib`` manager and enters
it through an exit stack. With one extension, that machinery cost more than the guards it ran:
about a tenth of a single-event mutation's CPU (docs/performance.md). Here each stage is a small
context manager of its own that calls the guards (graphql_schema/extensions.py) at the point where
the hook ran, the "after" part only when the stage raised nothing, as with a hook's ``yield``.
The schema has no Strawberry extension left (graphql_schema/schema.py refuses one).
"""

from __future__ import annotations

from types import TracebackType

from strawberry.extensions.context import (
    ExecutingContextManager,
    OperationContextManager,
    ParsingContextManager,
    StreamResultContextManager,
    ValidationContextManager,
)
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.types import ExecutionContext, StreamExecutionResult

from graphql_schema.extensions import OperationGuards


class GuardedRunner(SchemaExtensionsRunner):
    def __init__(self, execution_context: ExecutionContext, guards: OperationGuards) -> None:
        super().__init__(execution_context, [])
        self._guards = guards

    def operation(self) -> OperationContextManager:
        return _Operation(self._guards, self.execution_context)

    def parsing(self) -> ParsingContextManager:
        return _Parsing(self._guards, self.execution_context)

    def validation(self) -> ValidationContextManager:
        return _Validation(self._guards, self.execution_context)

    def executing(self) -> ExecutingContextManager:
        return _Executing(self._guards, self.execution_context)

    def on_stream_result(self, result: StreamExecutionResult) -> StreamResultContextManager:
        return _StreamResult(self._guards, result)


class _Stage:
    """A stage's guard before its body, and after it when the body raised nothing.

    Mixed in before Strawberry's class of the stage, whose ``__init__`` (gathering the hooks of
    extensions: there are none) it replaces.
    """

    def __init__(self, guards: OperationGuards, execution: ExecutionContext) -> None:
        self._guards = guards
        self._execution = execution

    def before(self) -> None:
        return None

    async def before_async(self) -> None:
        self.before()

    def after(self) -> None:
        return None

    def __enter__(self) -> None:
        self.before()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.after()

    async def __aenter__(self) -> None:
        await self.before_async()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc_val, exc_tb)


class _Operation(_Stage, OperationContextManager):
    def before(self) -> None:
        self._guards.begin(self._execution)

    def after(self) -> None:
        self._guards.end(self._execution)


class _Parsing(_Stage, ParsingContextManager):
    def before(self) -> None:
        self._guards.parse(self._execution)


class _Validation(_Stage, ValidationContextManager):
    def before(self) -> None:
        self._guards.validate(self._execution)


class _Executing(_Stage, ExecutingContextManager):
    def before(self) -> None:
        # As Strawberry says of an asynchronous hook in a synchronous execution.
        raise RuntimeError("the operation guards' on_execute failed to complete synchronously")

    async def before_async(self) -> None:
        await self._guards.admit(self._execution)


class _StreamResult(_Stage, StreamResultContextManager):
    def __init__(self, guards: OperationGuards, result: StreamExecutionResult) -> None:
        self._guards = guards
        self.result = result

    def before(self) -> None:
        self._guards.code_stream_result(self.result)
