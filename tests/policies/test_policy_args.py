"""Policy arguments a library caller gets wrong: one-line PolicyError naming the fix, never a CalibrationError
(the calibration is fine), an AttributeError or an IndexError."""
from __future__ import annotations

import numpy as np
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import quantize_inputs
from edgeexit.errors import PolicyError
from edgeexit.policies import make_policy
from edgeexit.policies.base import SampleState
from edgeexit.runner import run_samples
from edgeexit.runtime import Runtime


@pytest.fixture(scope="module")
def bundle():
    return load_bundle()


def test_an_unknown_on_miss_is_a_policy_error(bundle):
    with pytest.raises(PolicyError, match=r"^on_miss must be 'repredict' or 'step', not 'bogus'; pass one of them$"):
        make_policy("predictive", bundle, on_miss="bogus")


@pytest.mark.parametrize("bad", ["demo", None, 3])
def test_make_policy_needs_a_loaded_bundle(bad):
    with pytest.raises(PolicyError, match=r"^make_policy needs a loaded Bundle, not a .*; load one with "
                                          r"edgeexit.bundle.load_bundle\(path\)"):
        make_policy("full", bad)


@pytest.mark.backend
def test_the_oracle_without_a_target_for_a_sample_says_so(bundle):
    samples = bundle.split("evaluation").take(5)
    with Runtime(bundle) as rt:
        with pytest.raises(PolicyError, match=r"^the oracle has 3 targets and no target for sample 3; give one target "
                                              r"per sample"):
            run_samples(rt, make_policy("oracle", bundle, targets=[0, 1, 2]), samples)
        xq = quantize_inputs(samples.x, bundle.manifest.input)
        pol = make_policy("oracle", bundle, targets=[0, 1, 2])
        with pytest.raises(PolicyError, match="no target for sample -1"):  # it used to take the last target
            rt.infer(xq[0], pol)
        assert rt.infer(xq[0], pol, SampleState(1)).exit == 1
        with pytest.raises(PolicyError, match=r"^oracle target 99 is not an exit of this bundle \(0\.\.7, or -1 for "
                                              r"none\)"):
            run_samples(rt, make_policy("oracle", bundle, targets=np.array([0, 99, 1, 2, 3])), samples)


def test_an_option_a_policy_does_not_take_is_refused(bundle):
    # a misspelt option was dropped without a word: onmiss="step" ran predictive with on_miss="repredict"
    with pytest.raises(PolicyError, match=r"^policy predictive takes no option onmiss; its options: on_miss$"):
        make_policy("predictive", bundle, onmiss="step")
    with pytest.raises(PolicyError, match=r"^policy threshold takes no option on_miss; it takes none$"):
        make_policy("threshold", bundle, on_miss="step")


@pytest.mark.backend
def test_the_oracle_targets_come_from_the_library_and_bad_ones_name_it(bundle):
    from edgeexit.policies.oracle import oracle_targets

    with pytest.raises(PolicyError, match=r"^the oracle needs each sample's earliest correct exit: pass targets="
                                          r"edgeexit.policies.oracle.oracle_targets\(bundle, samples\)"):
        make_policy("oracle", bundle)
    for bad in ("abc", "12", 5, [0.5j], np.zeros((40, 8))):  # read as a corrupt calibration.json, which it has not
        with pytest.raises(PolicyError, match=r"^the oracle's targets must be one exit index per sample, not this "
                                              r"\w+; compute them with edgeexit.policies.oracle.oracle_targets") as info:
            make_policy("oracle", bundle, targets=bad)
        assert "\n" not in str(info.value)
    samples = bundle.split("evaluation").take(20)
    targets = oracle_targets(bundle, samples)
    with Runtime(bundle) as rt:
        out = run_samples(rt, make_policy("oracle", bundle, targets=targets), samples, pass_labels=True)
    assert [r["exit"] for r in out.records] == [int(t) for t in targets]
