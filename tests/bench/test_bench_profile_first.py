"""A bad profiles/<board>-simulated.json in the bundle is refused before the benchmark calibrates (~40 s), not
when the first planned arm reads it."""
from __future__ import annotations

import json
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
