"""When an import refreshes the planner's statistics: early, then each time it grew by a quarter."""

from __future__ import annotations

from itertools import pairwise

from app.services.bulk import ANALYZE_FIRST, statistics_due


def refreshes(total: int, step: int) -> list[int]:
    """The stored counts at which an import of ``total`` events, ``step`` at a time, refreshes."""
    done: list[int] = []
    for stored in range(step, total + 1, step):
        if statistics_due(stored=stored, analyzed_at=done[-1] if done else 0):
            done.append(stored)
    return done


def test_first_refresh_after_the_first_events() -> None:
    assert not statistics_due(stored=ANALYZE_FIRST - 1, analyzed_at=0)
    assert statistics_due(stored=ANALYZE_FIRST, analyzed_at=0)


def test_refreshes_keep_up_with_the_growth() -> None:
    done = refreshes(1_000_000, 5000)
    assert done[:3] == [10_000, 20_000, 30_000]
    for before, after in pairwise(done):
        assert after - before <= max(ANALYZE_FIRST, before // 4) + 5000
    assert len(done) < 25  # a fixed-size sample each: a few seconds over a million events
