"""--policies: a policy named explicitly that the bundle cannot run fails at once, in one line; left to the
default list, confidence-head is left out quietly on a bundle without confidence heads."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeexit.bench import core
from edgeexit.errors import PolicyError
from tests.cli.helpers import assert_one_line_error, edgeexit


def test_cli_refuses_confidence_head_on_a_bundle_without_its_heads(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = edgeexit("bench", "--board", "jetson-nano", "--simulate", "--policies", "predictive,confidence-head",
                 "--out", str(out), timeout=60)
    assert_one_line_error(p, "no confidence heads", "--policies", "post-trained")
    assert "calibrating" not in p.stderr and not out.exists()  # before any work, --out not even made


def test_run_bench_refuses_it_before_calibrating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def calibrated(*args: object, **kwargs: object) -> None:
        raise AssertionError("calibrated before the policies were checked")

    monkeypatch.setattr(core, "calibrate_all", calibrated)
    cfg = core.BenchConfig(board="jetson-nano", out_dir=tmp_path / "out", simulate=True, policies=["confidence-head"])
    with pytest.raises(PolicyError, match="no confidence heads"):
        core.run_bench(cfg)


def test_the_default_list_leaves_it_out_quietly() -> None:
    from edgeexit.bundle import load_bundle

    core.check_policies(load_bundle(), None)  # the default: no error (the arm is dropped when it runs)
    with pytest.raises(PolicyError):
        core.check_policies(load_bundle(), list(core.POLICY_NAMES))
