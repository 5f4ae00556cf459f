"""EENet for a budget (the issue: "budget given in MACs or milliseconds"): the most accurate thresholds
within the budget on the calibration split, and the budget held on the evaluation split."""
from __future__ import annotations

import numpy as np
import pytest

from edgeexit.boards import load_board
from edgeexit.boards.profile import load_profile
from edgeexit.bundle import load_bundle
from edgeexit.calibration import collect, threshold_cost
from edgeexit.costmodel import PhysicsCostModel, SegmentLatency
from edgeexit.errors import CalibrationError
from edgeexit.offline import replay
from edgeexit.policies.eenet import EENetPolicy
from edgeexit.policy_calibration import calibrate_eenet
from edgeexit.runtime import Runtime
from edgeexit.sim.physics import BoardPhysics

pytestmark = pytest.mark.backend

SLACK = 1.05  # held out: 1000 unseen samples may cost a little more than the split the budget was fitted on


@pytest.fixture(scope="module")
def data():
    b = load_bundle()
    rt = Runtime(b)
    return b, rt, collect(rt, b.split("calibration")), collect(rt, b.split("evaluation"))


def _nano_latency(b) -> SegmentLatency:
    physics = BoardPhysics(load_profile(load_board("jetson-nano")), threads=1)
    cost = PhysicsCostModel(physics, b)
    return SegmentLatency({s.label: cost.segment_ms(s.label, physics.f_max_khz) for s in b.blocks + b.exits}, "board model")


@pytest.mark.parametrize("fraction", [0.15, 0.25, 0.4])
def test_budget_in_macs_holds_on_held_out_data(data, fraction):
    b, rt, cal, ev = data
    budget = fraction * rt.full_macs
    e = calibrate_eenet(rt, cal, target=1.0, budget_macs=budget)
    assert e["mean_macs"] <= budget and e["budget_macs"] == budget and e["target_accuracy"] is None
    r = replay(rt, EENetPolicy(e["weights"], e["thresholds"], e["start_exit"]), ev.table, ev.y)
    assert r.macs.mean() <= SLACK * budget


def test_more_budget_buys_accuracy(data):
    b, rt, cal, _ = data
    accs = [calibrate_eenet(rt, cal, 1.0, budget_macs=f * rt.full_macs)["accuracy"] for f in (0.12, 0.2, 0.4)]
    assert accs == sorted(accs) and accs[-1] > accs[0]


def test_budget_in_ms_counts_the_latency_table(data):
    b, rt, cal, ev = data
    lat = _nano_latency(b)
    to_exit, heads = lat.to_exit_and_heads(b, rt.exit_blocks)
    budget_ms = 0.3 * (to_exit[-1] + sum(heads))
    e = calibrate_eenet(rt, cal, 1.0, budget_ms=budget_ms, latency=lat)
    assert e["mean_ms"] <= budget_ms and e["budget_ms"] == budget_ms and e["latency_source"] == "board model"
    r = replay(rt, EENetPolicy(e["weights"], e["thresholds"], e["start_exit"]), ev.table, ev.y)
    k = e["start_exit"]  # the heads before the chain's start never run
    held_out_ms = threshold_cost(r.exits - k, to_exit[k:], heads[k:]).mean()
    assert held_out_ms <= SLACK * budget_ms


def test_impossible_or_ambiguous_budgets_say_what_to_do(data):
    b, rt, cal, _ = data
    with pytest.raises(CalibrationError, match="raise the budget"):
        calibrate_eenet(rt, cal, 1.0, budget_macs=1000.0)
    with pytest.raises(CalibrationError, match="not both"):
        calibrate_eenet(rt, cal, 1.0, budget_macs=1e6, budget_ms=1.0, latency=_nano_latency(b))
    with pytest.raises(CalibrationError, match="segment latencies"):
        calibrate_eenet(rt, cal, 1.0, budget_ms=1.0)
    assert np.isfinite(calibrate_eenet(rt, cal, 0.95)["mean_macs"])  # no budget: the accuracy target, as before


def _weak_exits(cal):
    """The calibration data with every early exit wrong: no chain of them can pay."""
    from edgeexit.calibration import CalibrationData

    t = cal.table
    pred = t.pred.copy()
    pred[:, :-1] = (cal.y[:, None] + 1) % 10
    table = type(t)(logits_q=t.logits_q, logits=t.logits, confidence=t.confidence, max_softmax=t.max_softmax,
                    pred=pred, conf_q=t.conf_q, block_outputs=t.block_outputs)
    return CalibrationData(table, cal.y, cal.macs_to_exit, cal.head_macs, cal.full_accuracy)


def test_full_inference_is_a_schedule_when_no_exit_pays(data):
    """Starts ran 0..E-2 only, so on a bundle whose early exits are too weak to pay, eenet kept a chain costing
    more than the full network (a review's post-trained bundle: 8.02M MACs against full's 7.57M, at lower
    accuracy), and for a budget above full's cost it gave up accuracy full inference would have kept."""
    b, rt, cal, _ = data
    weak = _weak_exits(cal)
    last = len(rt.exits) - 1
    e = calibrate_eenet(rt, weak, target=cal.full_accuracy - 0.005)
    assert e["start_exit"] == last and e["mean_macs"] == rt.full_macs and e["accuracy"] == cal.full_accuracy
    e = calibrate_eenet(rt, weak, 1.0, budget_macs=1.01 * rt.full_macs)
    assert e["start_exit"] == last and e["accuracy"] == cal.full_accuracy
    assert calibrate_eenet(rt, cal, target=cal.full_accuracy - 0.005)["start_exit"] < last  # the demo's exits pay
