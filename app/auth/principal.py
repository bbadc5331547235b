"""Who is calling."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated account; proven by a JWT, only until the token's ``exp``."""

    account_id: int
    account_name: str
    expires_at: float | None = None

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and time.time() >= self.expires_at
