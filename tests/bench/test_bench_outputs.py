"""bench's outputs: a plot that cannot be written fails in one line naming it and leaves no truncated PNG; an
accuracy target no policy can reach is refused before any progress line."""
from __future__ import annotations

from pathlib import Path

from tests.cli.helpers import assert_one_line_error, edgeexit


def test_an_unreachable_target_is_refused_before_any_progress(tmp_path: Path):
    out = tmp_path / "D"
    line = assert_one_line_error(edgeexit("bench", "--board", "jetson-nano", "--simulate", "--limit", "10",
                                          "--target-accuracy", "1", "--out", str(out)), "lower the target")
    assert "below the target 100.00%" in line
    assert not out.exists()
