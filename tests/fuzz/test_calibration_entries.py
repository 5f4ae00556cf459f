"""calibration.json's policy entries under mutation: a policy is built and runs, or the one-line
CalibrationError says to calibrate again -- never another exception."""
from __future__ import annotations

import copy
import json
from typing import Any, Dict, List

import numpy as np
import pytest
from hypothesis import given

from edgeexit.bundle import load_bundle
from edgeexit.errors import CalibrationError, PolicyError
from edgeexit.offline import replay
from edgeexit.paths import demo_bundle_dir
from edgeexit.policies import make_policy
from edgeexit.runtime import Runtime
from tests.fuzz.strategies import FUZZ, mutated

pytestmark = pytest.mark.backend

CAL = json.loads((demo_bundle_dir() / "calibration.json").read_text())
# The small parts of each entry (the forecasters' weight matrices would take every mutation).
SMALL = {name: {k: v for k, v in entry.items() if k not in ("forecaster", "entry_forecaster", "weights")}
         for name, entry in CAL.items() if name != "meta"}


@pytest.fixture(scope="module")
def bundle_and_table():
    b = load_bundle()
    rt = Runtime(b)
    ev = b.split("evaluation").take(8)
    from edgeexit.bundle.data import quantize_inputs

    return b, rt, rt.exit_table(quantize_inputs(ev.x, b.manifest.input), keep_block0=True)


def _check(bundle_and_table: Any, name: str, small: Dict[str, Any]) -> None:
    b, rt, table = bundle_and_table
    if isinstance(small, dict):  # put the unmutated weight matrices back
        entry: Any = dict(small, **{k: v for k, v in CAL[name].items() if k not in SMALL[name]})
    else:
        entry = small
    b.calibration = dict(CAL, **{name: entry})
    try:
        pol = make_policy(name, b)
        r = replay(rt, pol, table)
    except (CalibrationError, PolicyError) as err:
        assert "\n" not in str(err) and str(err)
        return
    assert np.all((r.exits >= 0) & (r.exits < len(rt.exits)))


@FUZZ
@given(mutated(SMALL["predictive"]))
def test_predictive_entry_mutated(bundle_and_table: Any, small: Any) -> None:
    _check(bundle_and_table, "predictive", small)


@FUZZ
@given(mutated(SMALL["threshold"]))
def test_threshold_entry_mutated(bundle_and_table: Any, small: Any) -> None:
    _check(bundle_and_table, "threshold", small)


@FUZZ
@given(mutated(SMALL["eenet"]))
def test_eenet_entry_mutated(bundle_and_table: Any, small: Any) -> None:
    _check(bundle_and_table, "eenet", small)


@FUZZ
@given(mutated(SMALL["pe-heuristic"]))
def test_pe_heuristic_entry_mutated(bundle_and_table: Any, small: Any) -> None:
    _check(bundle_and_table, "pe-heuristic", small)


@pytest.mark.parametrize("name,key", [("threshold", "thresholds"), ("predictive", "thresholds"), ("eenet", "thresholds"),
                                      ("pe-heuristic", "tau"), ("pe-heuristic", "beta")])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_thresholds_are_refused(bundle_and_table: Any, name: str, key: str, bad: float) -> None:
    # json.loads reads NaN and Infinity; no confidence compares with them, so every sample would run to the
    # final exit (or exit at once) without a word.
    b = bundle_and_table[0]
    entry = dict(CAL[name])
    entry[key] = bad if key == "beta" else [bad] + list(entry[key][1:])
    b.calibration = dict(CAL, **{name: entry})
    with pytest.raises(CalibrationError, match="{}'s {} are not all finite numbers".format(name, key)):
        make_policy(name, b)


def _number_paths(doc: Any, prefix: tuple = ()) -> List[tuple]:
    """The path of every number in ``doc``, through the first element of each list (one per matrix, row ...)."""
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in _number_paths(v, prefix + (k,))]
    if isinstance(doc, list):
        return _number_paths(doc[0], prefix + (0,)) if doc else []
    return [prefix] if isinstance(doc, (int, float)) and not isinstance(doc, bool) else []


@pytest.mark.parametrize("name", ["predictive", "eenet", "threshold", "pe-heuristic"])
def test_an_integer_too_large_for_a_float_is_refused_in_one_line(bundle_and_table: Any, name: str) -> None:
    # JSON parses 10**400; float() and math.isfinite() raise OverflowError on it (an eenet weight was a traceback).
    b = bundle_and_table[0]
    paths = _number_paths(CAL[name])
    assert len(paths) >= 2
    for path in paths:
        entry = copy.deepcopy(CAL[name])
        node = entry
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = 10 ** 400
        b.calibration = dict(CAL, **{name: entry})
        try:
            make_policy(name, b)
        except (CalibrationError, PolicyError) as err:
            assert "\n" not in str(err)


def _used_number_paths() -> List[tuple]:
    """(policy, path) of a number each policy reads: its thresholds, tau, beta, weights, risks, starts, and
    the forecasters' arrays."""
    from edgeexit.policies import NUMERIC_ENTRIES

    out = []
    for name in ("predictive", "eenet", "threshold", "pe-heuristic"):
        for path in _number_paths(CAL[name]):
            if path[0] in NUMERIC_ENTRIES or path[0] in ("forecaster", "entry_forecaster") and path[1] in (
                    "w1", "b1", "w2", "b2", "mean", "std"):
                out.append((name, path))
    return out


@pytest.mark.parametrize("name,path", _used_number_paths())
def test_true_where_a_number_belongs_is_refused(bundle_and_table: Any, name: str, path: tuple) -> None:
    # float(true) is 1.0: a threshold of 1, a beta of 1 or a start at exit 1 ran without a word.
    b = bundle_and_table[0]
    entry = copy.deepcopy(CAL[name])
    node = entry
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = True
    b.calibration = dict(CAL, **{name: entry})
    with pytest.raises(CalibrationError, match="true or false") as err:
        make_policy(name, b)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["risk", "entry_risk"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, "2"])
def test_a_predictive_risk_that_is_no_positive_number_is_refused(bundle_and_table: Any, key: str, bad: Any) -> None:
    b = bundle_and_table[0]
    b.calibration = dict(CAL, predictive=dict(CAL["predictive"], **{key: bad}))
    with pytest.raises(CalibrationError, match="risk and entry_risk must be numbers >= 0"):
        make_policy("predictive", b)
