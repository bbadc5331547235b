"""The worker's own moving window: exact counts, the window's edge, Retry-After, idle subjects."""

from __future__ import annotations

import pytest
from limits import parse

from app.services.local_window import SWEEP_SECONDS, LocalMovingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_admits_the_limit_per_window_and_not_one_more(clock: Clock) -> None:
    window = LocalMovingWindow(clock)
    rate = parse("3/second")
    admitted = []
    for _ in range(5):
        admitted.append(window.hit(rate, "write", "account:1"))
        clock.now += 0.1
    assert admitted == [True, True, True, False, False]


def test_the_window_moves_one_request_at_a_time(clock: Clock) -> None:
    window = LocalMovingWindow(clock)
    rate = parse("2/second")
    assert window.hit(rate, "s")  # t = 0
    clock.now += 0.5
    assert window.hit(rate, "s")  # t = 0.5
    clock.now += 0.5
    assert not window.hit(rate, "s")  # t = 1.0: the first one, at the window's edge, counts
    clock.now += 0.01
    assert window.hit(rate, "s")  # t = 1.01: the first has left, one slot
    assert not window.hit(rate, "s")
    clock.now += 0.5
    assert window.hit(rate, "s")  # t = 1.51: the one of 0.5 has left


def test_a_refused_request_is_not_counted(clock: Clock) -> None:
    window = LocalMovingWindow(clock)
    rate = parse("1/second")
    assert window.hit(rate, "s")
    for _ in range(100):
        clock.now += 0.005
        assert not window.hit(rate, "s")
    clock.now += 0.6  # 1.1 s after the admitted one: refusals kept nothing
    assert window.hit(rate, "s")


def test_subjects_rates_and_accesses_have_their_own_windows(clock: Clock) -> None:
    window = LocalMovingWindow(clock)
    per_second, per_minute = parse("1/second"), parse("1/minute")
    assert window.hit(per_second, "read", "account:1")
    assert not window.hit(per_second, "read", "account:1")
    assert window.hit(per_second, "write", "account:1")
    assert window.hit(per_second, "read", "account:2")
    assert window.hit(per_minute, "read", "account:1")
    clock.now += 1.5
    assert window.hit(per_second, "read", "account:1")
    assert not window.hit(per_minute, "read", "account:1")


def test_seconds_until_free_names_when_the_oldest_counted_request_leaves(clock: Clock) -> None:
    window = LocalMovingWindow(clock)
    rate = parse("2/10 seconds")
    assert window.seconds_until_free(rate, "s") == 0.0  # never seen
    assert window.hit(rate, "s")
    clock.now += 3
    assert window.seconds_until_free(rate, "s") == 0.0  # room for one more
    assert window.hit(rate, "s")
    clock.now += 1
    assert not window.hit(rate, "s")
    assert window.seconds_until_free(rate, "s") == pytest.approx(6.0)  # 0 + 10 - 4
    clock.now += 6.01
    assert window.seconds_until_free(rate, "s") == 0.0
    assert window.hit(rate, "s")
    assert window.seconds_until_free(rate, "s") == pytest.approx(10 + 3 - 10.01)


def test_idle_subjects_are_forgotten(clock: Clock) -> None:
    window = LocalMovingWindow(clock)
    rate = parse("5/second")
    for n in range(1000):
        window.hit(rate, f"client:{n}")
    assert len(window) == 1000
    clock.now += SWEEP_SECONDS + 1
    assert window.hit(rate, "client:busy")
    assert len(window) == 1  # the thousand idle ones went with the sweep
