"""Segments calibrated apart (block k's output scale far from block k+1's input scale) are requantized, as
documented, but no longer silently: one warning per loaded bundle names the boundaries and their scale ratios.
Such a bundle ran at 1.8% accuracy without a word."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.paths import demo_bundle_dir
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend


def _foreign_block6(tmp_path: Path) -> Path:
    """The demo with block7's .tflite standing in as block6 (same shapes, different scales), uncalibrated (the
    demo's calibration.json was fitted to the real block6, and the bundle refuses it now)."""
    root = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(root))
    (root / "calibration.json").unlink()
    m = json.loads((root / "manifest.json").read_text())
    m["blocks"][6] = dict(m["blocks"][7], index=6, name="block6")
    (root / "manifest.json").write_text(json.dumps(m))
    return root


def test_far_apart_scales_warn_once_per_bundle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bundle = load_bundle(_foreign_block6(tmp_path))
    with Runtime(bundle) as rt:
        assert rt.requantized_boundaries == 3
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeexit: warning: bundle ")
    assert "block5 -> block6 (scale ratio 1.54)" in lines[0]
    assert "block6 -> block7 (scale ratio 0.953)" in lines[0]
    assert "block6 -> exit6 (scale ratio 0.953)" in lines[0]
    assert "re-export the bundle" in lines[0]
    with Runtime(bundle):  # the same loaded bundle: said once
        pass
    assert capsys.readouterr().err == ""


def test_a_warn_callback_gets_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    said = []
    with Runtime(load_bundle(_foreign_block6(tmp_path)), warn=said.append):
        pass
    assert len(said) == 1 and "block5 -> block6" in said[0]
    assert capsys.readouterr().err == ""


def test_the_demo_chains_without_a_warning(capsys: pytest.CaptureFixture) -> None:
    with Runtime(load_bundle()) as rt:
        assert rt.requantized_boundaries == 0
    assert capsys.readouterr().err == ""
