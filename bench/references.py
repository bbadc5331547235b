"""The yardsticks every ingest figure is compared with, served like the real thing.

- ``/bare``: a Starlette endpoint that parses the same JSON body and answers: the HTTP limit.
- ``/naive``: the same, inserting one row and committing per request: the naive design.
- ``/graphql``: a plain Strawberry schema with a ``recordEvents`` mutation that takes a typed list
  of visit inputs of the same shape as ours (``[EventInput!]!``, each ``{visit: VisitInput}``), as
  a careful user would write it: Strawberry's own input conversion, its parser and validation
  caches on, and one ``executemany`` (ids returned) and one commit per request into the same
  table as ``/naive``. The same request body as our ``recordEvents`` runs on it unchanged.

Run: ``python -m bench.references --database-url URL --port P`` (one uvicorn worker).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import orjson
import strawberry
import uvicorn
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table
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


def reference_app(database_url: str) -> Starlette:
    engine = (
        create_async_engine(database_url, pool_size=64, max_overflow=0)
        if (not database_url.startswith("sqlite"))
        else create_async_engine(database_url)
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with engine.begin() as conn:
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            await conn.run_sync(metadata.create_all)
        yield
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

    return Starlette(
        routes=[
            Route("/bare", bare, methods=["POST"]),
            Route("/naive", naive, methods=["POST"]),
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
