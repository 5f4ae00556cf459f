"""The VALUES of a bundle's forecast table, entry tree and forecaster weights are checked when the
calibration is loaded: a damaged calibration.json is one CalibrationError naming `edgeexit calibrate`,
never an IndexError in the planner or a run that silently forecasts nothing."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.errors import CalibrationError
from edgeexit.forecaster import EntryTree, Forecaster, ForecastTable
from edgeexit.paths import demo_bundle_dir
from edgeexit.policies.predictive import PredictivePolicy
from tests.cli.helpers import assert_one_line_error, edgeexit

FIX = "edgeexit calibrate"


@pytest.fixture(scope="module")
def demo():
    b = load_bundle()
    return b, copy.deepcopy(b.calibration["predictive"]), len(b.exits)


def _load(cal: Dict[str, Any], n: int) -> PredictivePolicy:
    return PredictivePolicy.from_calibration({"predictive": cal}, n)


def test_the_shipped_calibration_loads(demo):
    _, cal, n = demo
    pol = _load(cal, n)
    assert pol.table is not None and pol.entry_tree is not None
    assert ForecastTable.from_dict(pol.table.to_dict(), n_exits=n) == pol.table


@pytest.mark.parametrize("key", ["planned", "jump"])
@pytest.mark.parametrize("bad", [99, -1, 8, 2.5, True, "3"])
def test_table_values_outside_the_bundles_exits_are_refused(demo, key, bad):
    _, cal, n = demo
    damaged = copy.deepcopy(cal)
    damaged["table"][key] = [[bad] * damaged["table"]["bins"]] * n
    with pytest.raises(CalibrationError, match=FIX):
        _load(damaged, n)


@pytest.mark.parametrize("key", ["planned", "jump"])
def test_a_table_entry_at_or_before_its_own_exit_is_refused(demo, key):
    """The row of exit e is read at an unconfident head e: an exit at or before e is never reached."""
    _, cal, n = demo
    for value in (3, 2):
        damaged = copy.deepcopy(cal)
        damaged["table"][key][3][5] = value
        with pytest.raises(CalibrationError, match="exit 3 .*" + FIX):
            _load(damaged, n)
    ok = copy.deepcopy(cal)
    ok["table"][key][n - 1] = [0] * ok["table"]["bins"]  # the final exit's row is never read
    _load(ok, n)


def test_table_shape_and_bins_are_checked(demo):
    _, cal, n = demo
    for change in (lambda t: t.update(bins=0), lambda t: t["jump"].pop(),
                   lambda t: t.update(planned=t["planned"][:-1], jump=t["jump"][:-1])):
        damaged = copy.deepcopy(cal)
        change(damaged["table"])
        with pytest.raises(CalibrationError, match=FIX):
            _load(damaged, n)


@pytest.mark.parametrize("which", ["forecaster", "entry_forecaster"])
@pytest.mark.parametrize("damage", ["nan_w1", "inf_b2", "zero_std", "short_b1", "flat_w2", "mean_len", "flag"])
def test_forecaster_weights_are_checked(demo, which, damage):
    _, cal, n = demo
    d = copy.deepcopy(cal)
    f = d[which]
    if damage == "nan_w1":
        f["w1"][0][0] = float("nan")
    elif damage == "inf_b2":
        f["b2"][1] = float("inf")
    elif damage == "zero_std":
        f["std"][0] = 0.0
    elif damage == "short_b1":
        f["b1"] = f["b1"][:-1]
    elif damage == "flat_w2":
        f["w2"] = [v for row in f["w2"] for v in row]
    elif damage == "mean_len":
        f["mean"] = f["mean"] + [0.0]
        f["std"] = f["std"] + [1.0]
    else:
        f["use_block_features"] = "no"  # bool("no") is True
    with pytest.raises(CalibrationError, match=FIX):
        Forecaster.from_dict(f)
    with pytest.raises(CalibrationError, match=FIX):
        _load(d, n)


def test_head_forecaster_without_block_features_must_take_the_three_head_features(demo):
    _, cal, n = demo
    d = copy.deepcopy(cal)
    f = d["forecaster"]
    assert f["use_block_features"] is False or len(f["mean"]) > 3
    f["use_block_features"] = False
    f["w1"], f["mean"], f["std"] = f["w1"] + [f["w1"][0]], f["mean"] + [0.0], f["std"] + [1.0]
    with pytest.raises(CalibrationError, match="features.*" + FIX):
        _load(d, n)


@pytest.mark.parametrize("bad", ["0.9", True, None])
def test_thresholds_that_are_not_numbers_are_refused(demo, bad):
    # NaN and inf are refused for every policy by make_policy (tests/fuzz/test_calibration_entries.py)
    _, cal, n = demo
    d = copy.deepcopy(cal)
    d["thresholds"][3] = bad
    with pytest.raises(CalibrationError, match=FIX):
        _load(d, n)


def test_entry_tree_values_are_checked(demo):
    _, cal, n = demo
    tree = cal["entry_tree"]
    for key, value in (("threshold", float("nan")), ("threshold", float("inf")), ("threshold", True),
                       ("threshold", "0.5"), ("planned", 1.5), ("planned", True), ("jump", n)):
        bad = copy.deepcopy(tree)
        leaf = bad["feature"].index(-1)
        bad[key][0 if key == "threshold" else leaf] = value
        with pytest.raises(CalibrationError, match=FIX):
            EntryTree.from_dict(bad, n_features=len(cal["entry_forecaster"]["mean"]), n_exits=n)


def test_cli_run_with_a_damaged_table_is_one_line(tmp_path: Path):
    bundle = tmp_path / "b"
    shutil.copytree(str(demo_bundle_dir()), str(bundle))
    path = bundle / "calibration.json"
    data = json.loads(path.read_text())
    data["predictive"]["table"]["planned"] = [[99] * 32] * 8
    path.write_text(json.dumps(data))
    for extra in (["--board", "jetson-nano", "--simulate"], []):
        proc = edgeexit("run", "--model", str(bundle), "--policy", "predictive", "--limit", "4", *extra)
        assert_one_line_error(proc, "forecast table", FIX)
