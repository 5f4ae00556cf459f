from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeexit.paths import demo_bundle_dir


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    """A private copy of the demo bundle that a test may break."""
    dst = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(dst))
    return dst
