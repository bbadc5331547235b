"""The yardsticks every ingest figure is compared with, served like the real thing.

- ``/bare``: a Starlette endpoint that parses the same JSON body and answers: the HTTP limit.
- ``/naive``: the same, inserting one row and committing per request: the naive design.
- ``/grouped``: the same row, committed with the rows of concurrent requests in one transaction
  (one writer; a request is answered once its row committed), and nothing else: no credential,
  validation, enrichment, rollups, log or metrics. What the group-commit design alone reaches on
  the machine, the ceiling of every door built on it.
- ``/graphql``: a plain Strawberry schema with a ``recordEvents`` mutation that takes a typed list
  of visit inputs of the same shape as ours (``[EventInput!]!``, each ``{visit: VisitInput}``), as
  a careful user would write it: Strawberry's own input conversion, its parser and validation
  caches on, and one ``executemany`` (ids returned) and one commit per request into the same
  table as ``/naive``. The same request body as our ``recordEvents`` runs on it unchanged.

Run: ``python -m bench.references --database-url URL --port P`` (one uvicorn worker).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg
import orjson
import strawberry
import uvicorn
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache

REGISTERED = orjson.dumps({"status": "registered"})
metadata = MetaData()
naive_event = Table(
    "naive_event",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("store", String(36), nullable=False),
    Column("session_id", String(64)),
    Column("url", String(4096)),
)


@strawberry.input
class VisitInput:
    """The same fields, types and defaults as searchstats' VisitInput."""

    engine: strawberry.ID | None = None
    event_id: str | None = None
    occurred_at: datetime | None = None
    session_id: str | None = None
    user_id: str | None = None
    store: str
    url: str | None = None
    page_type: str | None = None
    dfid: str | None = None


@strawberry.input(one_of=True)
class EventInput:
    visit: VisitInput | None = strawberry.UNSET


@strawberry.type
class RecordResult:
    id: strawberry.ID
    status: str
    duplicate: bool
    query_id: str | None = None


@strawberry.type
class Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def record_events(
        self, info: strawberry.Info, input: list[EventInput]
    ) -> list[RecordResult]:
        engine: AsyncEngine = info.context["engine"]
        rows = [
            {
                "store": event.visit.store,
                "session_id": event.visit.session_id,
                "url": event.visit.url,
            }
            for event in input
            if event.visit
        ]
        async with engine.begin() as conn:
            ids = (await conn.execute(naive_event.insert().returning(naive_event.c.id), rows)).all()
        return [
            RecordResult(id=strawberry.ID(str(row.id)), status="registered", duplicate=False)
            for row in ids
        ]


plain_schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    extensions=[lambda: ParserCache(maxsize=1024), lambda: ValidationCache(maxsize=1024)],
)


class PlainGraphQL(GraphQL[dict[str, object], None]):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(plain_schema)
        self.engine = engine

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> dict[str, object]:
        return {"request": request, "response": response, "engine": self.engine}


class GroupCommit:
    """Rows of concurrent requests inserted and committed together, one batch at a time.

    Each batch is one hand-off to the database, as searchstats' own batches are: on SQLite one
    function on a thread of its own from BEGIN to COMMIT, on PostgreSQL one statement (its own
    transaction); a batch that took a round trip per statement would make this yardstick slower
    than the doors it is the ceiling of.
    """

    def __init__(self, database_url: str) -> None:
        self._url = make_url(database_url)
        self._sqlite: sqlite3.Connection | None = None
        self._postgresql: asyncpg.Connection | None = None
        self._pending: list[tuple[tuple[str, str | None, str | None], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, store: str, session_id: str | None, url: str | None) -> None:
        """Returns once the row is committed."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append(((store, session_id, url), done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write())
        await done

    async def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._postgresql is not None:
            await self._postgresql.close()

    async def _write(self) -> None:
        # What arrives while a batch commits waits for the next one.
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self._store([row for row, _ in batch])
                except Exception as error:
                    for _, done in batch:
                        if not done.done():  # not a request cancelled meanwhile
                            done.set_exception(error)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writer = None

    async def _store(self, rows: list[tuple[str, str | None, str | None]]) -> None:
        if self._url.get_backend_name() == "sqlite":
            if self._sqlite is None:
                # One batch at a time uses it, from whichever thread runs that batch.
                self._sqlite = sqlite3.connect(
                    self._url.database or "", isolation_level=None, check_same_thread=False
                )
            await asyncio.to_thread(_insert_on_sqlite, self._sqlite, rows)
            return
        if self._postgresql is None:
            dsn = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._postgresql = await asyncpg.connect(dsn)
        await self._postgresql.execute(
            "INSERT INTO naive_event (store, session_id, url) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[])",
            *zip(*rows, strict=True),
        )


def _insert_on_sqlite(
    connection: sqlite3.Connection, rows: list[tuple[str, str | None, str | None]]
) -> None:
    connection.execute("BEGIN")
    try:
        connection.executemany(
            "INSERT INTO naive_event (store, session_id, url) VALUES (?, ?, ?)", rows
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def reference_app(database_url: str) -> Starlette:
    engine = (
        create_async_engine(database_url, pool_size=64, max_overflow=0)
        if (not database_url.startswith("sqlite"))
        else create_async_engine(database_url)
    )

    group_commit = GroupCommit(database_url)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            await conn.run_sync(metadata.create_all)
        yield
        await group_commit.close()
        await engine.dispose()

    async def bare(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if not isinstance(body, dict) or "store" not in body:
            return Response(status_code=400)
        return Response(REGISTERED, media_type="application/json")

    async def naive(request: Request) -> Response:
        body = orjson.loads(await request.body())
        async with engine.begin() as conn:
            await conn.execute(
                naive_event.insert().values(
                    store=body["store"], session_id=body.get("session_id"), url=body.get("url")
                )
            )
        return Response(REGISTERED, media_type="application/json")

    async def grouped(request: Request) -> Response:
        body = orjson.loads(await request.body())
        await group_commit.insert(body["store"], body.get("session_id"), body.get("url"))
        return Response(REGISTERED, media_type="application/json")

    return Starlette(
        routes=[
            Route("/bare", bare, methods=["POST"]),
            Route("/naive", naive, methods=["POST"]),
            Route("/grouped", grouped, methods=["POST"]),
            Route("/graphql", PlainGraphQL(engine), methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        reference_app(args.database_url), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
