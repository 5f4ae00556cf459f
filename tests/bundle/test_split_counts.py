"""splits.*.n is checked against the split file when the split is loaded (it was parsed and never checked)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.errors import BundleError


@pytest.mark.parametrize("split,n", [("evaluation", 5), ("calibration", 1001)])
def test_a_wrong_split_count_is_one_line_naming_the_fix(bundle_copy: Path, split: str, n: int) -> None:
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["splits"][split]["n"] = n
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    bundle = load_bundle(bundle_copy)  # split files are only read (and checked) when used
    with pytest.raises(BundleError) as err:
        bundle.split(split)
    msg = str(err.value)
    assert "\n" not in msg
    assert "holds 1,000 samples but manifest.json says n = {:,}".format(n) in msg
    assert "set splits.{}.n to 1000 or re-export the bundle".format(split) in msg


def test_the_shipped_counts_match() -> None:
    bundle = load_bundle()
    for name, spec in bundle.manifest.splits.items():
        assert len(bundle.split(name)) == spec.n
