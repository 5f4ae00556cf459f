"""NaN and inf in float samples are refused in one line naming the count and the first sample: NaN cast to an
arbitrary int8 code (a numpy RuntimeWarning only) and inf clipped to 127, silently, in calibrate, run and
run --input."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgeexit.bundle import load_bundle, read_samples
from edgeexit.errors import InputDataError
from tests.cli.helpers import assert_one_line_error, edgeexit


def _float_bundle(root: Path, calib_x: np.ndarray) -> None:
    """The demo bundle taking raw float32 samples, its calibration split replaced by ``calib_x``."""
    m = json.loads((root / "manifest.json").read_text())
    m["input"]["raw_dtype"] = "float32"
    for split in m["splits"].values():
        path = root / split["file"]
        with np.load(str(path)) as f:
            x, y = f["x"].astype(np.float32), f["y"]
        if split["file"] == "calib.npz":
            x = calib_x[: len(y)] if calib_x is not None else x
        np.savez(str(path), x=x, y=y[: len(x)])
        split.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest(), n=len(x))
    (root / "manifest.json").write_text(json.dumps(m))


def _poisoned(n: int = 40) -> np.ndarray:
    x = np.full((n, 28, 28, 1), 100.0, np.float32)
    x[5, 3, 3, 0] = np.nan
    x[7] = np.nan  # 784 more
    x[9, 0, 0, 0] = np.inf
    x[11, 0, 0, 0] = -np.inf
    return x


def test_read_samples_counts_the_non_finite_values(tmp_path: Path, bundle_copy: Path) -> None:
    _float_bundle(bundle_copy, None)
    m = load_bundle(bundle_copy).manifest
    path = tmp_path / "x.npz"
    np.savez(str(path), x=_poisoned())
    with pytest.raises(InputDataError) as err:
        read_samples(path, m.input, m.num_classes)
    msg = str(err.value)
    assert "\n" not in msg
    assert "x holds 787 NaN/inf values (first at sample 5); clean the samples" in msg


def test_finite_float_samples_still_load(tmp_path: Path, bundle_copy: Path) -> None:
    _float_bundle(bundle_copy, None)
    m = load_bundle(bundle_copy).manifest
    path = tmp_path / "x.npy"
    np.save(str(path), np.full((3, 28, 28, 1), 1e30, np.float32))  # finite: saturates, as int8 quantization does
    assert len(read_samples(path, m.input, m.num_classes)) == 3


def test_calibrate_refuses_a_nan_calibration_split(bundle_copy: Path) -> None:
    _float_bundle(bundle_copy, _poisoned(1000))
    proc = edgeexit("calibrate", "--model", str(bundle_copy))
    assert_one_line_error(proc, "NaN/inf values (first at sample 5)", "clean the samples")


def test_run_input_refuses_inf(tmp_path: Path, bundle_copy: Path) -> None:
    _float_bundle(bundle_copy, None)
    x = np.zeros((4, 28, 28, 1), np.float32)
    x[2, 1, 1, 0] = np.inf
    path = tmp_path / "in.npz"
    np.savez(str(path), x=x)
    proc = edgeexit("run", "--model", str(bundle_copy), "--input", str(path))
    assert_one_line_error(proc, "x holds 1 NaN/inf value (first at sample 2)")
