"""List arguments that select: left out, they select everything; empty, they select nothing,
which is refused rather than read as everything (a form with nothing ticked would otherwise
erase a user everywhere, stream every event, or count every click)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from app.errors import BadParams

T = TypeVar("T")


def selected(values: Iterable[T] | None, *, field: str, noun: str) -> tuple[T, ...] | None:
    """The values the argument names, or None when it is left out (all of them)."""
    if values is None:
        return None
    chosen = tuple(values)
    if not chosen:
        raise BadParams(f"{field} must name at least one {noun} (leave it out for all of them)")
    return chosen
