"""The README stays true: every setting is in its table."""

from __future__ import annotations

import re
from pathlib import Path

from app.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        f"SEARCHSTATS_{name.upper()}"
        for name in Settings.model_fields
        if f"`SEARCHSTATS_{name.upper()}`" not in README
    ]
    assert missing == []


def test_readme_documents_no_setting_that_does_not_exist() -> None:
    documented = {
        name for name in re.findall(r"`(SEARCHSTATS_[A-Z0-9_]+)`", README) if "TEST" not in name
    }
    known = {f"SEARCHSTATS_{name.upper()}" for name in Settings.model_fields}
    assert documented - known == set()
