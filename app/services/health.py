"""Readiness: the database answers and its schema is at the latest migration."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from app.services.runtime import Runtime
from app.storage.migrate import is_at_head


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    checks: dict[str, str] = field(default_factory=dict)


async def readiness(*, runtime: Runtime) -> Readiness:
    try:
        migrated = await asyncio.wait_for(
            is_at_head(runtime.database), runtime.settings.db_connect_timeout_seconds
        )
    except Exception as error:
        return Readiness(False, {"database": f"unavailable ({type(error).__name__})"})
    if not migrated:
        return Readiness(False, {"database": "ok", "migrations": "pending"})
    return Readiness(True, {"database": "ok", "migrations": "ok"})
