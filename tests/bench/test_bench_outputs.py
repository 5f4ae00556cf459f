"""bench's outputs: a plot that cannot be written fails in one line naming it and leaves no truncated PNG; an
accuracy target no policy can reach is refused before any progress line."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from edgeexit.bench.plots import write_plots  # noqa: E402
from edgeexit.errors import OutputError  # noqa: E402
from tests.cli.helpers import assert_one_line_error, edgeexit  # noqa: E402


def _res() -> dict:
    arms = {a: {"exit_histogram": [5, 3, 2, 1]} for a in ("threshold@race", "predictive@planned")}
    return {"simulated": True, "arms": arms, "pareto": {}, "timeline_cpu_khz": {"threshold@race": [[1479000], [921600]]}}


def test_a_full_disk_names_the_plot_and_leaves_no_empty_file(tmp_path: Path, monkeypatch):
    def full(fd):  # what a full file system does: the bytes written, then ENOSPC when they must reach the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError) as err:
        write_plots(_res(), tmp_path)
    assert "exit_histogram.png" in str(err.value) and "No space left" in str(err.value)
    assert "--out" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither a 0-byte plot nor a temporary file left behind


def test_plots_replace_an_old_plot_whole_and_keep_its_mode(tmp_path: Path):
    old = tmp_path / "exit_histogram.png"
    old.write_bytes(b"old")
    os.chmod(str(old), 0o640)
    assert write_plots(_res(), tmp_path) == ["exit_histogram.png", "timeline.png"]
    assert old.read_bytes()[:4] == b"\x89PNG" and stat.S_IMODE(old.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exit_histogram.png", "timeline.png"]


def test_an_unreachable_target_is_refused_before_any_progress(tmp_path: Path):
    out = tmp_path / "D"
    line = assert_one_line_error(edgeexit("bench", "--board", "jetson-nano", "--simulate", "--limit", "10",
                                          "--target-accuracy", "1", "--out", str(out)), "lower the target")
    assert "below the target 100.00%" in line
    assert not out.exists()


def test_the_timeline_caption_mentions_red_lines_only_where_some_are_drawn():
    from edgeexit.bench.report import PLOT_CAPTIONS, _caption_values

    def caption(res: dict) -> str:
        return PLOT_CAPTIONS["timeline.png"].format(**_caption_values(res))

    assert "Red lines" not in caption(_res())  # no planner arm, or an older results.json
    assert "Red lines" not in caption(dict(_res(), timeline_solves={"predictive@planned": [[128, True]]}))  # not drawn
    assert "Red lines" in caption(dict(_res(), timeline_solves={"predictive@planned": [[8, False]]}))
    assert "first 100 inferences" in caption(_res())
