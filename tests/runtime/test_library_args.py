"""Library entry points a script calls with a plausible wrong argument: a one-line edgeexit error naming the fix,
never a bare TypeError, ValueError or AttributeError from deep inside (a review of the library API found each of
these)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import quantize_inputs, read_samples
from edgeexit.calibration import collect, target_from
from edgeexit.errors import CalibrationError, InputDataError, PolicyError
from edgeexit.execute import execute
from edgeexit.policies import make_policy
from edgeexit.policies.oracle import oracle_targets
from edgeexit.policy_calibration import calibrate_all

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def cal(bundle, rt):
    return collect(rt, bundle.split("calibration").take(64))


@pytest.mark.parametrize("x, why", [
    (lambda s: s.x[0], r"x has shape \(28, 28, 1\) but the model takes \(N, 28, 28, 1\); one sample is x\[None\]"),
    (lambda s: np.zeros((2, 3)), r"x has shape \(2, 3\) but the model takes"),
    (lambda s: [[0]], r"x must be a numeric numpy array of samples, not a list; pass np.asarray\(x\)"),
    (lambda s: np.array([["a"]]), r"x must be a numeric numpy array of samples, not a <U1 array"),
])
def test_quantize_inputs_says_what_shape_it_takes(bundle, x, why):
    """The package docstring's own first call: a single sample without its N axis was a numpy reshape error."""
    with pytest.raises(InputDataError, match=why):
        quantize_inputs(x(bundle.split("evaluation")), bundle.manifest.input)
    with pytest.raises(InputDataError, match=r"spec must be the bundle's InputSpec \(bundle.manifest.input\)"):
        quantize_inputs(np.zeros((1, 28, 28, 1)), "x")  # type: ignore[arg-type]


def test_read_samples_says_what_it_takes(bundle, tmp_path):
    np.savez(str(tmp_path / "s.npz"), x=np.zeros((1, 28, 28, 1), np.uint8))
    with pytest.raises(InputDataError, match=r"takes the bundle's bundle.manifest.input and bundle.manifest.num_classes"):
        read_samples(tmp_path / "s.npz", "x", 10)  # type: ignore[arg-type]


def test_make_policy_takes_a_name(bundle):
    with pytest.raises(PolicyError, match=r"^make_policy takes a policy's name \(a str\), not a list; choose one of:"):
        make_policy(["threshold"], bundle)  # type: ignore[arg-type]


def test_a_bundle_loaded_without_its_calibration_says_so(bundle):
    """It said "has no threshold calibration; run `edgeexit calibrate`", with calibration.json right there."""
    bare = load_bundle(bundle.root, calibration=False)
    with pytest.raises(CalibrationError, match=r"was loaded with calibration=False, so its calibration.json was not read"):
        make_policy("threshold", bare)
    make_policy("full", bare)  # needs none


def test_arrays_where_samples_belong_are_refused(bundle, rt):
    x = bundle.split("evaluation").x[:3]
    with pytest.raises(InputDataError, match=r"samples must be a Samples, not ndarray; wrap arrays as Samples\(x, y, source\)"):
        oracle_targets(bundle, x)
    with pytest.raises(InputDataError, match=r"samples must be a Samples, not ndarray"):
        collect(rt, x)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match=r"^oracle_targets needs a loaded Bundle"):
        oracle_targets("demo", bundle.split("evaluation").take(3))


def test_execute_refuses_a_warn_that_is_not_callable(bundle, rt):
    """It failed with "'int' object is not callable" after the probe and the planner were attached."""
    with pytest.raises(PolicyError, match=r"^warn must be callable \(called with each warning's text\), not a int"):
        execute(bundle, rt, make_policy("threshold", bundle), bundle.split("evaluation").take(2), warn=3)


@pytest.mark.parametrize("target", [math.nan, 1.5, -0.1, "0.9", None, True])
def test_calibrate_all_refuses_a_target_that_is_no_accuracy(rt, cal, target):
    """A NaN target fitted "never exit early" and was saved to calibration.json as NaN (not JSON)."""
    with pytest.raises(CalibrationError, match=r"^target=.* is not an accuracy; give a number from 0 to 1"):
        calibrate_all(rt, cal, target)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**40, 0.5, "1"])
def test_calibrate_all_refuses_a_bad_seed(rt, cal, seed):
    with pytest.raises(CalibrationError, match=r"^seed=.* is not a seed; give an integer from 0 to 2\*\*32 - 1"):
        calibrate_all(rt, cal, 0.9, seed=seed)  # type: ignore[arg-type]


def test_calibrate_all_refuses_an_unknown_policy_name(rt, cal):
    """An unknown name was skipped without a word, so only threshold was fitted."""
    with pytest.raises(CalibrationError, match=r"^policies=\['foo'\]: 'foo' not a policy; give a list of"):
        calibrate_all(rt, cal, 0.9, policies=["foo"])
    out = calibrate_all(rt, cal, 0.9, policies="pe-heuristic")  # one name as a str: that policy, not a substring match
    assert "pe-heuristic" in out and "eenet" not in out
    # a bench's --policies names full and oracle too, which nothing fits; any iterable of names will do
    out = calibrate_all(rt, cal, 0.9, policies=(p for p in ["oracle", "full", "pe-heuristic"]))
    assert "pe-heuristic" in out and "predictive" not in out


@pytest.mark.parametrize("args", [(0.25, 1.5), (0.25, "0.9"), (150.0,), (math.nan,)])
def test_target_from_checks_its_numbers(cal, args):
    with pytest.raises(CalibrationError, match=r"is not (an accuracy|a drop in percentage points)"):
        target_from(cal, *args)
