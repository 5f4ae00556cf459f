"""A calibration fault in a user's own bundle names that bundle in its fix: a plain `edgeexit calibrate`
recalibrated the demo bundle and left the user's broken (a review)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.errors import BundleError, CalibrationError
from edgeexit.paths import demo_bundle_dir
from edgeexit.policies import make_policy


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    d = tmp_path / "mine"
    shutil.copytree(str(demo_bundle_dir()), str(d))
    return d


def test_unreadable_calibration_names_the_bundle(bundle_dir: Path) -> None:
    (bundle_dir / "calibration.json").write_text("{")
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_dir)
    assert str(err.value).endswith("delete it and run `edgeexit calibrate --model {}`".format(bundle_dir))


@pytest.mark.parametrize("policy, edit", [
    ("predictive", lambda c: c["predictive"].update(forecaster="x")),
    ("threshold", lambda c: c["threshold"].update(thresholds="x")),
])
def test_malformed_entry_names_the_file_and_the_bundle(bundle_dir: Path, policy: str, edit) -> None:
    path = bundle_dir / "calibration.json"
    cal = json.loads(path.read_text())
    edit(cal)
    path.write_text(json.dumps(cal))
    with pytest.raises(CalibrationError) as err:
        make_policy(policy, load_bundle(bundle_dir))
    msg = str(err.value)
    assert msg.startswith("{}: ".format(path)), msg
    assert "run `edgeexit calibrate --model {}` again".format(bundle_dir) in msg, msg
