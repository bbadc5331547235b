"""The secret key file is made once, whole, even by processes that make it at the same moment."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.auth.keys import create_secret, read_secret
from app.settings import Settings


def test_secrets_made_at_the_same_moment_are_one_file_and_one_key(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'searchstats.db'}",
        secret_key="",
        secret_key_file=str(tmp_path / "searchstats.secret"),
    )
    together = threading.Barrier(8)

    def make(_: int) -> str:
        together.wait()
        return create_secret(settings)

    with ThreadPoolExecutor(8) as pool:
        made = set(pool.map(make, range(8)))
    assert len(made) == 1
    assert made == {read_secret(settings)}
    assert [path.name for path in tmp_path.iterdir()] == ["searchstats.secret"]  # no draft left
    assert (tmp_path / "searchstats.secret").stat().st_mode & 0o777 == 0o600
