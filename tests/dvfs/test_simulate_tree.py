"""The private tree of --simulate: made per session, and never left behind."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from edgeexit.dvfs import open_board
from edgeexit.errors import EdgeExitError


def test_a_tree_that_cannot_be_built_leaves_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Audit defect: the temporary directory was made before the tree, and stayed when building it failed
    # (here: no firmware profile); no run ever held its lock, so the sweep of killed runs never took it.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("EDGEEXIT_FIRMWARE_PROFILES", str(tmp_path / "missing"))
    with pytest.raises(EdgeExitError):
        with open_board("raspberry-pi-4", simulate=True):
            pass
    assert list(tmp_path.iterdir()) == []
