"""Readiness: the database answers and its schema is not behind this code."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from app.services.runtime import Runtime
from app.storage.migrate import SchemaState, schema_of


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)


async def readiness(*, runtime: Runtime) -> Readiness:
    """A schema ahead of the code (a newer version migrated the database during a rolling
    upgrade) is ready: a release's migrations keep the previous release working."""
    try:
        schema = await asyncio.wait_for(
            schema_of(runtime.database), runtime.settings.db_connect_timeout_seconds
        )
    except Exception as error:
        return Readiness(False, {"database": f"unavailable ({type(error).__name__})"})
    state = schema.state
    checks = {"database": "ok", "migrations": state.value}
    return Readiness(state is not SchemaState.PENDING, checks)
