"""A bundle whose first exit alone meets the accuracy target (as PTEENet's can): predictive has nothing
to forecast at any target, so calibrate fits every other policy, leaves predictive out with a note that
says why and what to do, and `run --policy predictive` repeats that note in one line."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Tuple

import numpy as np
import pytest

from edgeexit.bundle import NOT_CALIBRATED, load_bundle
from edgeexit.calibration import CalibrationData, collect, target_from
from edgeexit.errors import CalibrationError
from edgeexit.paths import demo_bundle_dir
from edgeexit.policies import make_policy
from edgeexit.policy_calibration import calibrate_all
from edgeexit.runtime import Runtime
from tests.cli.helpers import assert_one_line_error, edgeexit, json_out

pytestmark = pytest.mark.backend

N = 200  # samples: enough for every fit, cheap on two shared cores


def _first_exit_always_right(data: CalibrationData) -> CalibrationData:
    """The demo's exit table with labels set to exit 0's predictions: exit 0 is 100% right and beats the
    final exit, so every sample stops at exit 0 whatever the target."""
    y = data.table.pred[:, 0].astype(np.int64)
    return CalibrationData(data.table, y, data.macs_to_exit, data.head_macs, float((data.table.pred[:, -1] == y).mean()))


@pytest.fixture(scope="module")
def fitted() -> Tuple[Any, Runtime, CalibrationData, dict]:
    b = load_bundle()
    rt = Runtime(b)
    data = _first_exit_always_right(collect(rt, b.split("calibration").take(N), keep_block0=True))
    return b, rt, data, calibrate_all(rt, data, target_from(data, 0.25))


def test_the_other_policies_are_still_calibrated(fitted: Any) -> None:
    _, _, data, cal = fitted
    assert {"threshold", "eenet"} <= set(cal)
    assert cal["threshold"]["accuracy"] == 1.0  # every sample at exit 0
    assert "predictive" not in cal
    # pe-heuristic where it can be fitted, else a note: never silently missing
    assert ("pe-heuristic" in cal) != ("pe-heuristic" in cal[NOT_CALIBRATED])


def test_the_note_says_why_and_does_not_send_the_user_in_circles(fitted: Any) -> None:
    note = fitted[3][NOT_CALIBRATED]["predictive"]
    assert "nothing to forecast" in note and "use threshold" in note
    assert "raise the target" not in note and "lower the target" not in note
    assert "no target up to the final exit's" in note  # exit 0 beats the final exit: no target helps


def test_run_says_why_in_one_line(fitted: Any) -> None:
    b, _, _, cal = fitted
    b.calibration = cal
    with pytest.raises(CalibrationError, match="no predictive calibration: `edgeexit calibrate` could not fit it: .*nothing "
                                               "to forecast") as err:
        make_policy("predictive", b)
    assert "\n" not in str(err.value)
    for name in ("threshold", "eenet"):
        make_policy(name, b)


def test_calibrate_and_run_cli(tmp_path: Path, fitted: Any) -> None:
    """The same bundle on disk: its calibration split relabelled, end to end through the console script."""
    _, _, data, _ = fitted
    root = tmp_path / "b"
    shutil.copytree(str(demo_bundle_dir()), str(root))
    (root / "calibration.json").unlink()
    with np.load(str(root / "calib.npz")) as f:
        x = f["x"][:N]
    np.savez(str(root / "calib.npz"), x=x, y=data.y)
    m = json.loads((root / "manifest.json").read_text())
    m["splits"]["calibration"].update(sha256=hashlib.sha256((root / "calib.npz").read_bytes()).hexdigest(), n=N)
    (root / "manifest.json").write_text(json.dumps(m))

    out = json_out(edgeexit("calibrate", "--model", str(root), "--json"))
    assert {"threshold", "eenet"} <= set(out["policies"]) and "predictive" not in out["policies"]
    assert "nothing to forecast" in out[NOT_CALIBRATED]["predictive"]
    stored = json.loads((root / "calibration.json").read_text())
    assert "predictive" not in stored and "nothing to forecast" in stored[NOT_CALIBRATED]["predictive"]

    assert_one_line_error(edgeexit("run", "--model", str(root), "--policy", "predictive", "--limit", "5"),
                          "no predictive calibration", "use threshold")
    ok = edgeexit("run", "--model", str(root), "--policy", "threshold", "--limit", "5", "--json")
    assert ok.returncode == 0, ok.stderr
    bench = tmp_path / "bench"
    p = edgeexit("bench", "--model", str(root), "--board", "jetson-nano", "--simulate", "--limit", "20", "--no-sweep",
                 "--out", str(bench))
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("predictive is left out of the benchmark") == 1, p.stderr
    res = json.loads((bench / "results.json").read_text())
    assert "predictive@planned" not in res["arms"] and "threshold@race" in res["arms"]
    assert "nothing to forecast" in res["not_calibrated"]["predictive"]
