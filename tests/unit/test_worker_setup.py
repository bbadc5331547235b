"""What a server worker sets up once its app is built: the collector and the switch interval."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import main
from app.switch_interval import SWITCH_INTERVAL_SECONDS, shorten_switch_interval


@pytest.fixture
def switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_the_switch_interval_is_shortened(switch_interval: None) -> None:
    sys.setswitchinterval(0.005)
    shorten_switch_interval()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_SECONDS)


def test_a_worker_shortens_it_once_its_app_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    steps: list[str] = []
    monkeypatch.setattr(main, "lean_log_records", lambda: steps.append("log records"))
    monkeypatch.setattr(main, "settle_garbage_collector", lambda: steps.append("collector"))
    monkeypatch.setattr(main, "shorten_switch_interval", lambda: steps.append("switch interval"))
    monkeypatch.setenv("SEARCHSTATS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/worker.db")
    monkeypatch.setenv("SEARCHSTATS_SECRET_KEY", "worker-secret")

    main.app_from_environment()

    assert steps == ["log records", "collector", "switch interval"]
