"""What bench refuses before it starts work: a bad profiles/<board>-simulated.json in the bundle (before it
calibrates, ~40 s), and an output file it could not write (before the run, not after)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgeexit.bench import core
from edgeexit.errors import CalibrationError
from edgeexit.paths import demo_bundle_dir
from tests.cli.helpers import assert_one_line_error, edgeexit


@pytest.fixture
def bundle_with_bad_profile(tmp_path: Path) -> Path:
    b = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(b))
    (b / "profiles").mkdir(exist_ok=True)
    (b / "profiles" / "jetson-nano-simulated.json").write_text(json.dumps({"schema": "something else"}))
    return b


def test_run_bench_checks_the_profile_before_calibrating(bundle_with_bad_profile: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def calibrated(*args: object, **kwargs: object) -> None:
        raise AssertionError("calibrated before the profile was checked")

    monkeypatch.setattr(core, "calibrate_all", calibrated)
    cfg = core.BenchConfig(board="jetson-nano", out_dir=tmp_path / "out", simulate=True, model_path=bundle_with_bad_profile)
    with pytest.raises(CalibrationError, match="is not an edgeexit profile"):
        core.run_bench(cfg)


def test_cli_bench_fails_on_the_profile_at_once(bundle_with_bad_profile: Path, tmp_path: Path) -> None:
    p = edgeexit("bench", "--board", "jetson-nano", "--simulate", "--model", str(bundle_with_bad_profile), "--out",
                 str(tmp_path / "out"), timeout=60)
    assert_one_line_error(p, "jetson-nano-simulated.json", "edgeexit profile")
    assert "calibrating" not in p.stderr


@pytest.mark.parametrize("blocker", ["directory", "fifo"])
def test_cli_bench_refuses_an_output_file_in_the_way_at_once(blocker: str, tmp_path: Path) -> None:
    """results.json as a directory failed only after the whole benchmark; as a FIFO the final write blocked forever."""
    out = tmp_path / "out"
    out.mkdir()
    if blocker == "directory":
        (out / "results.json").mkdir()
    else:
        os.mkfifo(str(out / "results.json"))
    p = edgeexit("bench", "--board", "jetson-nano", "--simulate", "--limit", "10", "--no-sweep", "--no-sensitivity",
                 "--out", str(out), timeout=60)
    assert_one_line_error(p, "results.json", "--out DIR")
    assert not (out / "report.md").exists()  # refused before any work
