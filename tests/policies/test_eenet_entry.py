"""eenet's calibration entry is checked when it is loaded: a hand-edited or damaged weight matrix is one
CalibrationError naming `edgeexit calibrate`, never an IndexError, an OverflowError or a silent NaN at run."""
from __future__ import annotations

import copy
import math

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import quantize_inputs
from edgeexit.errors import CalibrationError
from edgeexit.offline import replay
from edgeexit.policies import make_policy
from edgeexit.policies.eenet import N_FEATURES, sigmoid
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend

FIX = "run `edgeexit calibrate --model .*` again"


@pytest.fixture(scope="module")
def demo():
    b = load_bundle()
    rt = Runtime(b)
    ev = b.split("evaluation").take(30)
    return b, rt, rt.exit_table(quantize_inputs(ev.x, b.manifest.input)), copy.deepcopy(b.calibration)


def _with_weights(cal, change):
    cal = copy.deepcopy(cal)
    change(cal["eenet"]["weights"])
    return cal


def _set(row, col, value):
    def change(w):
        w[row][col] = value
    return change


def _replace_row(row, value):
    def change(w):
        w[row] = value
    return change


@pytest.mark.parametrize("change,why", [
    (_replace_row(0, []), "row 0 is not {} numbers".format(N_FEATURES + 1)),
    (_replace_row(3, [1.0]), "row 3 is not"),
    (_replace_row(2, "1,2,3,4,5"), "row 2 is not"),
    (_set(1, 2, float("nan")), "row 1 holds a value that is not a finite number"),
    (_set(4, 0, float("inf")), "row 4 holds a value"),
    (_set(0, 4, "0.5"), "row 0 holds a value"),
    (lambda w: w.pop(), "are not a list of 8 rows, one per exit"),
])
def test_damaged_weights_are_refused_with_the_fix(demo, change, why):
    b, _, _, cal = demo
    b.calibration = _with_weights(cal, change)
    with pytest.raises(CalibrationError, match="eenet weights {}.*{}".format(why, FIX.replace("`", "."))):
        make_policy("eenet", b)


def test_thresholds_of_the_wrong_shape_are_refused(demo):
    b, _, _, cal = demo
    for bad in (cal["eenet"]["thresholds"][:-1], None, ["0.5"] * 8):  # true: make_policy's own line (tests/fuzz)
        b.calibration = dict(cal, eenet=dict(cal["eenet"], thresholds=bad))
        with pytest.raises(CalibrationError, match="eenet thresholds must list 8 numbers.*edgeexit calibrate"):
            make_policy("eenet", b)


@pytest.mark.parametrize("value", [-1e6, 1e6, -1e300])
def test_huge_finite_weights_run(demo, value):
    """A bias of -1e6 drives the score to e^-1e6: math.exp(1e6) overflowed; the score is simply 0 now."""
    b, rt, table, cal = demo
    b.calibration = _with_weights(cal, _set(0, 4, value))
    r = replay(rt, make_policy("eenet", b), table)
    assert ((r.exits >= 0) & (r.exits < len(rt.exits))).all()


@pytest.mark.parametrize("z,want", [(-1e6, 0.0), (-745.0, math.exp(-745.0)), (-701.0, math.exp(-701.0)), (0.0, 0.5),
                                    (3.0, 1.0 / (1.0 + math.exp(-3.0))), (1e6, 1.0)])
def test_sigmoid_is_safe_and_exact(z, want):
    assert sigmoid(z) == pytest.approx(want, rel=1e-12, abs=0.0)


def test_an_entry_without_start_exit_runs_the_whole_chain(demo):
    """calibration.json files written before eenet searched its start exit have no start_exit: they load as
    start 0, every head from exit 0 on runs, as they were fitted."""
    b, rt, table, cal = demo
    entry = dict(cal["eenet"])
    entry.pop("start_exit", None)
    b.calibration = dict(cal, eenet=entry)
    pol = make_policy("eenet", b)
    assert pol.start_exit == 0 and pol.may_evaluate(0) and pol.describe()["start_exit"] == 0
    assert all(h[0] == 0 for h in replay(rt, pol, table).heads)


@pytest.mark.parametrize("bad", [-1, 8, 1.0, "1", None, [1]])  # true: make_policy's own line (tests/fuzz)
def test_a_start_exit_that_is_no_exit_index_is_refused(demo, bad):
    b, _, _, cal = demo
    b.calibration = dict(cal, eenet=dict(cal["eenet"], start_exit=bad))
    with pytest.raises(CalibrationError, match="eenet start_exit must be an exit index from 0 to 7.*{}".format(
            FIX.replace("`", "."))):
        make_policy("eenet", b)
