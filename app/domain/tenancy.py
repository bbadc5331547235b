"""Rules for account names and engine hashids."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable

from app.domain.events import HASHID
from app.domain.selection import selected
from app.errors import BadParams

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def check_account_name(name: str) -> str:
    if not ACCOUNT_NAME.fullmatch(name):
        raise BadParams("account name must be 1-64 characters: letters, digits, '_', '.', '@', '-'")
    return name


def check_hashid(hashid: str) -> str:
    if not HASHID.fullmatch(hashid):
        raise BadParams(f"invalid hashid {hashid[:64]!r}: expected 32 lowercase hex characters")
    return hashid


def new_hashid() -> str:
    return secrets.token_hex(16)


def named_engines(engines: Iterable[object] | None) -> tuple[str, ...]:
    """The engines an argument names, as hashids; an absent one (``None``) names none, which
    means all of the caller's. An empty list is refused (app.domain.selection)."""
    return tuple(str(engine) for engine in selected(engines, field="engines", noun="engine") or ())
