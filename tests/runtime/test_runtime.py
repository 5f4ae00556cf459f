"""The segment runtime on the demo bundle: skipping, MAC accounting, policies, requantization."""
from __future__ import annotations

import numpy as np
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import quantize_inputs
from edgeexit.errors import PolicyError
from edgeexit.interpreter import resolve_backend
from edgeexit.policies import make_policy
from edgeexit.policies.base import ExitPolicy
from edgeexit.runner import run_samples
from edgeexit.runtime import Runtime, RuntimeHooks
from edgeexit.segments import make_requant

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def rt():
    with Runtime(load_bundle()) as r:
        yield r


@pytest.fixture(scope="module")
def evalset():
    return load_bundle().split("evaluation").take(300)


def test_backend_is_the_requested_one(rt):
    import os

    want = os.environ.get("EDGEEXIT_INTERPRETER")
    if want:
        assert rt.backend.name == want


class Recorder(RuntimeHooks):
    def __init__(self):
        self.ran = []

    def before_segment(self, spec, state):
        self.ran.append(spec.label)


def test_full_runs_every_block_and_only_the_final_head(rt, evalset):
    xq = quantize_inputs(evalset.x[:1], rt.bundle.manifest.input)
    rec = Recorder()
    res = rt.infer(xq[0], make_policy("full", rt.bundle), hooks=[rec])
    n_blocks = len(rt.blocks)
    assert rec.ran == ["block{}".format(i) for i in range(n_blocks)] + ["exit{}".format(rt.last_exit)]
    assert res.macs == rt.full_macs
    assert res.exit == rt.last_exit and res.blocks_run == n_blocks


class JumpTo(ExitPolicy):
    """Evaluate only one chosen head (what Predictive Exit does), exit there."""

    name = "jump"

    def __init__(self, target):
        self.target = target

    def start(self, state):
        state.planned_exit = self.target

    def wants_head(self, e, state):
        return e == self.target

    def decide(self, head, state):
        return True


def test_skipped_blocks_and_heads_never_run(rt, evalset):
    xq = quantize_inputs(evalset.x[:1], rt.bundle.manifest.input)
    target = 3
    rec = Recorder()
    res = rt.infer(xq[0], JumpTo(target), hooks=[rec])
    b = rt.exit_blocks[target]
    assert rec.ran == ["block{}".format(i) for i in range(b + 1)] + ["exit{}".format(target)]
    assert res.macs == rt.macs_to_exit[target] + rt.head_macs[target]
    assert res.heads_run == [target] and res.planned_exit == target


def test_threshold_beats_full_on_macs_and_matches_exit_table(rt, evalset):
    pol = make_policy("threshold", rt.bundle)
    out = run_samples(rt, pol, evalset)
    s = out.summary()
    assert 0.0 < s.macs_reduction_vs_full < 1.0
    # the runtime's exits agree with an offline simulation over the exit table
    xq = quantize_inputs(evalset.x, rt.bundle.manifest.input)
    table = rt.exit_table(xq)
    th = np.array(pol.thresholds)
    passes = table.max_softmax >= th
    passes[:, -1] = True
    expected = np.argmax(passes, axis=1)
    got = np.array([r["exit"] for r in out.records])
    assert np.array_equal(got, expected)


def test_threshold_policy_zero_thresholds_exit_at_first_head(rt, evalset):
    from edgeexit.policies.simple import ThresholdPolicy

    pol = ThresholdPolicy([0.0] * len(rt.exits))
    pol.bind(rt)
    xq = quantize_inputs(evalset.x[:5], rt.bundle.manifest.input)
    for x in xq:
        assert rt.infer(x, pol).exit == 0


def test_headview_max_softmax_matches_float_softmax(rt, evalset):
    xq = quantize_inputs(evalset.x[:20], rt.bundle.manifest.input)
    table = rt.exit_table(xq)
    z = table.logits
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(table.max_softmax, p.max(-1), rtol=1e-5)


def test_requant_identity_and_rescale():
    from edgeexit.bundle.manifest import TensorSpec

    a = TensorSpec("a", [1, 4], "int8", 0.1, -128)
    same = TensorSpec("b", [1, 4], "int8", 0.1 * (1 + 1e-7), -128)
    assert make_requant(a, same) is None
    b = TensorSpec("b", [1, 4], "int8", 0.2, 0)
    rq = make_requant(a, b)
    q = np.array([[-128, -28, 72, 127]], dtype=np.int8)
    real = (q.astype(np.float32) + 128) * 0.1
    want = np.clip(np.round(real / 0.2), -128, 127).astype(np.int8)
    assert np.array_equal(rq(q), want)


def test_interpreter_selection_errors():
    from edgeexit.errors import InterpreterError

    with pytest.raises(InterpreterError, match="unknown interpreter backend"):
        resolve_backend("onnx")


def test_block_outputs_are_derived_from_the_kept_block(rt, evalset):
    """Replays read later blocks' outputs from the one exit_table kept: the same codes as running the blocks."""
    xq = quantize_inputs(evalset.x[:20], rt.bundle.manifest.input)
    table = rt.exit_table(xq, keep_block0=True)
    assert list(table.block_outputs) == [rt.exit_blocks[0]]
    derived = rt.block_outputs(table, 2)
    for x, got in zip(xq, derived):
        h = x
        for k in range(3):
            rq = rt.block_requant[k]
            h = rt.blocks[k].run(h if rq is None else rq(h))
        assert np.array_equal(got, h)
    assert rt.block_outputs(table, 2) is derived  # kept: many replays pay once
    with pytest.raises(PolicyError, match="keep_block0"):
        rt.block_outputs(rt.exit_table(xq[:2]), 1)
