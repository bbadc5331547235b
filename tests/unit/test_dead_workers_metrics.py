"""Several workers' metrics: a worker killed without stopping leaves no live gauge behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import _shared_metrics
from app.services.metrics import MULTIPROCESS_ENV, forget_dead_workers


def test_the_live_gauges_of_a_worker_that_died_leave_the_sum(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead, alive = int(gone.stdout), os.getpid()
    names = [
        f"gauge_livesum_{dead}.db",
        f"gauge_liveall_{dead}.db",
        f"gauge_livesum_{alive}.db",
        f"counter_{dead}.db",  # what a dead worker counted stays counted
        "gauge_livesum_parent.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    forget_dead_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{alive}.db", f"counter_{dead}.db", "gauge_livesum_parent.db"]
    )


def test_a_metrics_folder_named_but_missing_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers that find no folder fail as they start, and are started again, in a loop."""
    folder = tmp_path / "metrics" / "searchstats"
    monkeypatch.setenv(MULTIPROCESS_ENV, str(folder))
    with _shared_metrics(2):
        assert folder.is_dir()
