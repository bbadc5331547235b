"""Time buckets: the 15-minute UTC rollup grain."""

from __future__ import annotations

from datetime import UTC, datetime

ROLLUP_SECONDS = 15 * 60
ROLLUP_MICROS = ROLLUP_SECONDS * 1_000_000


def rollup_bucket(instant: datetime) -> int:
    """Start of the 15-minute UTC bucket holding ``instant``, in epoch microseconds."""
    seconds = int(instant.astimezone(UTC).timestamp())
    return (seconds - seconds % ROLLUP_SECONDS) * 1_000_000
