"""Inputs a library caller builds are checked as a sample file's are: one-line InputDataError, never numpy's or
the interpreter's own error, and never a silent wrong figure (labels out of range scored 0.0 accuracy)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import Samples, quantize_inputs
from edgeexit.errors import InputDataError
from edgeexit.execute import execute
from edgeexit.policies import make_policy
from edgeexit.runner import run_samples

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def ev(bundle):
    return bundle.split("evaluation").take(4)


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("bad", [np.zeros((1, 3, 3), np.int8), "float32", [0, 1, 2]])
def test_infer_refuses_what_is_not_block_0s_input(bundle, rt, ev, bad):
    if isinstance(bad, str):
        bad = ev.x[:1].astype(np.float32).reshape(rt.input_shape)
    with pytest.raises(InputDataError, match=r"^Runtime.infer takes block 0's quantized input, int8 \(1, .*; quantize "
                                             r"raw samples with edgeexit.bundle.data.quantize_inputs") as err:
        rt.infer(bad, make_policy("full", bundle))
    _one_line(err)


def test_exit_table_refuses_raw_samples(rt, ev):
    with pytest.raises(InputDataError, match=r"^Runtime.exit_table takes .* \(N, 1, "):
        rt.exit_table(ev.x)


def _bad_samples(ev):
    y_float = ev.y.astype(np.float64)
    nan_x = ev.x.astype(np.float32)
    nan_x[1, 0] = np.nan
    return {
        "wrong shape": (Samples(np.zeros((4, 3, 3), np.uint8), None, "mine"), "x has shape .* but the model takes"),
        "bare array": (ev.x[:3], "samples must be a Samples, not ndarray; wrap arrays as Samples"),
        "list x": (Samples(ev.x.tolist(), None, "mine"), "x is a list, not a numpy array"),
        "labels out of range": (Samples(ev.x, np.full(4, 99), "mine"), r"y must be integer class indices in 0\.\.9"),
        "float labels": (Samples(ev.x, y_float, "mine"), "y must be integer class indices"),
        "float64 x": (Samples(ev.x.astype(np.float64), ev.y, "mine"), "x has dtype float64 but the model expects raw"),
        "NaN x": (Samples(nan_x, ev.y, "mine"), "x has dtype float32|NaN"),
        "one label short": (Samples(ev.x, ev.y[:3], "mine"), "give one label per sample"),
    }


@pytest.mark.parametrize("case", list(_bad_samples(load_bundle().split("evaluation").take(4))))
def test_run_samples_and_execute_check_caller_built_samples(bundle, rt, ev, case):
    samples, why = _bad_samples(ev)[case]
    for run in (lambda: run_samples(rt, make_policy("full", bundle), samples),
                lambda: execute(bundle, rt, make_policy("full", bundle), samples)):
        with pytest.raises(InputDataError, match=why) as err:
            run()
        _one_line(err)


def test_a_run_over_no_samples_still_reports(bundle, rt, ev):
    assert execute(bundle, rt, make_policy("full", bundle), ev.take(0)).summary["n"] == 0


@pytest.mark.parametrize("limit", [-1, 2.5, True, "3"])
def test_take_refuses_what_is_not_a_count(ev, limit):
    with pytest.raises(InputDataError, match=r"the limit must be a count of samples, an int of at least 0, or None"):
        ev.take(limit)


def test_take_counts(ev):
    assert len(ev.take(np.int64(2))) == 2 and len(ev.take(0)) == 0 and ev.take(None) is ev and len(ev.take(99)) == 4


def test_quantized_rows_still_infer(bundle, rt, ev):
    xq = quantize_inputs(ev.x, bundle.manifest.input)
    assert rt.infer(xq[0], make_policy("full", bundle)).exit == len(rt.exits) - 1
