"""Every test here gets its own runtime dir (state files and locks)."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_runtime_dir(runtime_dir: Path) -> Path:
    return runtime_dir
