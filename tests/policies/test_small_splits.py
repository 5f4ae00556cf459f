"""A calibration split too small to fit on is one CalibrationError that says how many samples calibrate
needs; a small split it accepts calibrates without a numpy warning (empty folds gave "Mean of empty slice"
and an IndexError in the entry tree)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.calibration import MIN_CALIBRATION_SAMPLES, collect, target_from
from edgeexit.errors import CalibrationError
from edgeexit.forecaster import fit_entry_tree
from edgeexit.policy_calibration import calibrate_all
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def demo():
    b = load_bundle()
    rt = Runtime(b)
    return rt, collect(rt, b.split("calibration").take(20), keep_block0=True)


@pytest.mark.parametrize("n", [1, 2, 3, MIN_CALIBRATION_SAMPLES - 1])
def test_too_few_samples_say_how_many_are_needed(demo, n):
    rt, data = demo
    sub = data.subset(np.arange(n))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CalibrationError, match="the calibration split has {} samples; calibrate needs at least {}".format(
                n, MIN_CALIBRATION_SAMPLES)):
            calibrate_all(rt, sub, target_from(sub, 0.25))


@pytest.mark.parametrize("n", [MIN_CALIBRATION_SAMPLES, MIN_CALIBRATION_SAMPLES + 1, 13])
def test_small_accepted_splits_calibrate_without_warnings(demo, n):
    rt, data = demo
    sub = data.subset(np.arange(n))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning fails the test
        out = calibrate_all(rt, sub, target_from(sub, 0.25))
    assert out["threshold"]["n"] == n and np.isfinite(out["threshold"]["out_of_fold_accuracy"])


@pytest.mark.parametrize("n,min_leaf", [(1, 1), (1, 10), (2, 1), (3, 10)])
def test_an_entry_tree_grows_on_a_handful_of_samples(n, min_leaf):
    """A cross-fit fold's training part of one sample reached the Gini split with nothing to split."""
    x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    labels = np.arange(n) % 2
    tree = fit_entry_tree(x, labels, labels, depth=4, min_leaf=min_leaf)
    assert [tree.jump[tree.leaf(list(r))] for r in x] == (labels.tolist() if min_leaf == 1 else [0] * n)
