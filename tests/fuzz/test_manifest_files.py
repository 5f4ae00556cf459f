"""manifest.json edited by hand, then loaded as a user would (files, splits, segments): every edit ends in
a one-line error, or the bundle runs with the quantization its .tflite files really have."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from edgeexit.bundle import load_bundle
from edgeexit.bundle.manifest import SCALE_RTOL
from edgeexit.errors import BundleError, InputDataError, InterpreterError
from edgeexit.paths import demo_bundle_dir
from edgeexit.runtime import Runtime
from tests.fuzz.strategies import FUZZ, perturbed

pytestmark = pytest.mark.backend

MANIFEST = json.loads((demo_bundle_dir() / "manifest.json").read_text())
# The keys whose edits the audit found unchecked; among ~250 leaves they would rarely be drawn.
FOCUS = ("scale", "zero_point", "quantization", "raw_dtype", "dtype", "file", "preprocessing")


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: Any) -> Path:
    root = tmp_path_factory.mktemp("fuzz-bundle") / "b"
    shutil.copytree(str(demo_bundle_dir()), str(root))
    return root


def _specs(m: Any) -> list:
    """(scale, zero_point) of block 0's input as fed, then of every segment tensor, from parsed or raw JSON."""
    if isinstance(m, dict):
        segs = m["blocks"] + m["exits"]
        pairs = [(m["input"]["quantization"]["scale"], m["input"]["quantization"]["zero_point"])]
        for s in segs:
            for key in ("input", "output", "confidence_output"):
                if s.get(key):
                    pairs.append((s[key]["scale"], s[key]["zero_point"]))
        return pairs
    pairs = [(m.input.scale, m.input.zero_point)]
    for s in m.blocks + m.exits:
        for t in (s.input, s.output, s.confidence_output):
            if t is not None:
                pairs.append((t.scale, t.zero_point))
    return pairs


@FUZZ
@given(perturbed(MANIFEST, FOCUS))
def test_manifest_edits_load_or_fail_in_one_line(bundle_dir: Path, data: Any) -> None:
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    try:
        b = load_bundle(bundle_dir)
        for split in b.manifest.splits:
            b.split(split)
        with Runtime(b):
            pass
    except (BundleError, InputDataError, InterpreterError) as err:
        assert "\n" not in str(err) and str(err)
        return
    # Accepted: then the runtime quantizes, requantizes and decodes as the .tflite files do.
    for (s, z), (s0, z0) in zip(_specs(b.manifest), _specs(MANIFEST)):
        assert z == z0 and abs(s - s0) <= SCALE_RTOL * s0, (s, z, s0, z0)
