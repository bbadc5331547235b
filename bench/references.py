"""The two yardsticks every ingest figure is compared with, served like the real thing.

- ``/bare``: a Starlette endpoint that parses the same JSON body and answers: the HTTP limit.
- ``/naive``: the same, inserting one row and committing per request: the naive design.

Run: ``python -m bench.references --database-url URL --port P`` (one uvicorn worker).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import uvicorn
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
        routes=[Route("/bare", bare, methods=["POST"]), Route("/naive", naive, methods=["POST"])],
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
