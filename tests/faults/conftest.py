"""Fixtures: a private runtime dir (state files and locks) for each test, inherited by subprocesses."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "runtime"
    monkeypatch.setenv("EDGEEXIT_RUNTIME_DIR", str(d))
    return d
