"""Predictive's forecast (``planned_exit``, what the DVFS planner sizes the work by) never falls short of
the head it jumps to, and the distilled lookup table forecasts and jumps only to enabled exits."""
from __future__ import annotations

import numpy as np
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import quantize_inputs
from edgeexit.forecaster import EntryTree, Forecaster, distill
from edgeexit.policies.base import SampleState
from edgeexit.policies.predictive import PredictivePolicy, jump_cost_matrix
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def demo():
    b = load_bundle()
    rt = Runtime(b)
    xq = quantize_inputs(b.split("evaluation").take(200).x, b.manifest.input)
    return b, rt, rt.exit_table(xq, keep_block0=True)


def _scrambled(good: Forecaster, seed: int) -> Forecaster:
    rng = np.random.RandomState(seed)
    return Forecaster(w1=rng.normal(0, 3, good.w1.shape), b1=rng.normal(0, 1, good.b1.shape), w2=rng.normal(0, 3, good.w2.shape),
                      b2=rng.normal(0, 1, good.b2.shape), mean=good.mean, std=good.std, n_exits=good.n_exits,
                      use_block_features=True)


@pytest.mark.parametrize("entry", ["tree", "mlp"])
def test_the_entry_forecast_is_never_before_the_head_it_jumps_to(demo, entry):
    b, rt, table = demo
    cal = b.calibration["predictive"]
    first = cal["enabled_exits"].index(True)
    head = Forecaster.from_dict(cal["forecaster"])
    en = Forecaster.from_dict(cal["entry_forecaster"])
    if entry == "tree":  # one leaf: forecast the first enabled exit, jump three exits past it
        tree = EntryTree([-1], [0.0], [-1], [-1], [first], [first + 3])
        pol = PredictivePolicy(head, cal["thresholds"], entry=en, entry_tree=tree, entry_exit=cal["entry_exit"])
    else:  # a scrambled MLP with a cheap over-jump: its expected-cost jump often lies past its likeliest exit
        pol = PredictivePolicy(head, cal["thresholds"], entry=_scrambled(en, 7), entry_risk=0.05, entry_exit=cal["entry_exit"])
    pol.bind(rt)
    feats = rt.block_outputs(table, pol.feature_block)
    later = 0
    for i in range(len(feats)):
        state = SampleState(i)
        pol.start(state)
        state.block_output = feats[i]
        pol.wants_head(pol.entry_exit, state)
        assert state.planned_exit >= pol._target, (i, state.planned_exit, pol._target)
        later += pol._target > first
    assert later > 0, "some jump must pass the first enabled exit, or the test checks nothing"


def test_distilled_table_uses_only_enabled_exits():
    """States only at exit 2; exits 1 and 3 disabled, and the MLP favours exit 3 strongly: the table must
    still forecast and jump to enabled exits, in the rows it has states for and in the empty ones."""
    n_exits, d = 5, 3
    rng = np.random.RandomState(0)
    b2 = np.zeros(n_exits)
    b2[3] = 10.0
    fc = Forecaster(w1=rng.normal(0, 1, (d, 8)), b1=np.zeros(8), w2=rng.normal(0, 0.1, (8, n_exits)), b2=b2,
                    mean=np.zeros(d), std=np.ones(d), n_exits=n_exits, use_block_features=False)
    enabled = [True, False, True, False, True]
    x = np.column_stack([rng.uniform(0.2, 1.0, 300), rng.uniform(0, 1, 300), np.full(300, 0.5)])
    cur = np.full(300, 2)
    cost = jump_cost_matrix([100, 200, 300, 400, 500], [10] * n_exits, 1.0, enabled)
    table = distill(fc, x, cur, cost, enabled=enabled)
    for e in range(n_exits - 1):
        for key in ("planned", "jump"):
            values = set(getattr(table, key)[e])
            assert all(v > e and enabled[v] for v in values), (key, e, values)
    assert set(table.planned[0]) == set(table.jump[0]) == {2}  # empty row: the next enabled exit, not exit 1
    assert set(table.planned[2]) == {4}  # the MLP's favourite, exit 3, is disabled


# --- decide() on one head: found untested by mutating it --------------------------------------------------
def _head_forecaster(n_exits: int, favourite: int) -> Forecaster:
    """A head forecaster that ignores its features and always favours ``favourite``."""
    from edgeexit.forecaster import HEAD_FEATURES

    b2 = np.zeros(n_exits)
    b2[favourite] = 5.0
    return Forecaster(w1=np.zeros((HEAD_FEATURES, 4)), b1=np.zeros(4), w2=np.zeros((4, n_exits)), b2=b2,
                      mean=np.zeros(HEAD_FEATURES), std=np.ones(HEAD_FEATURES), n_exits=n_exits, use_block_features=False)


def _view(rt, table, i: int, e: int):
    from edgeexit.policies.base import HeadView

    return HeadView(e, table.logits_q[i, e], rt.decoders[e])


def test_a_head_exactly_at_its_threshold_exits(demo):
    b, rt, table = demo
    n = len(rt.exits)
    pol = PredictivePolicy(_head_forecaster(n, n - 1), [0.5] * n)
    pol.bind(rt)
    v = _view(rt, table, 0, 2)
    pol.thresholds[2] = v.max_softmax()
    assert pol.decide(v, SampleState(0)) is True
    pol.thresholds[2] = float(np.nextafter(v.max_softmax(), 2.0))
    assert pol.decide(v, SampleState(0)) is False


@pytest.mark.parametrize("favourite", [3, 5, 7])
def test_a_miss_forecasts_the_forecasters_favourite_exit(demo, favourite):
    b, rt, table = demo
    n = len(rt.exits)
    pol = PredictivePolicy(_head_forecaster(n, favourite), [1.0] * (n - 1) + [0.0], risk=1e6)  # every exit enabled
    pol.bind(rt)
    state = SampleState(0)
    pol.start(state)
    v = _view(rt, table, 0, 1)
    assert v.max_softmax() < 1.0 and pol.decide(v, state) is False  # a miss, so a forecast
    assert state.planned_exit == favourite and 1 < pol._target <= favourite


def test_a_cheap_jump_past_the_forecast_raises_the_forecast(demo):
    """With over-jumping free (risk 0) the least-cost jump lies past the likeliest exit: the planner must be
    told the later one, or it sizes the work short of the head that will run."""
    b, rt, table = demo
    n = len(rt.exits)
    pol = PredictivePolicy(_head_forecaster(n, 2), [1.0] * (n - 1) + [0.0], risk=0.0)
    pol.bind(rt)
    state = SampleState(0)
    pol.start(state)
    v = _view(rt, table, 0, 1)
    assert v.max_softmax() < 1.0 and pol.decide(v, state) is False
    assert pol._target > 2 and state.planned_exit == pol._target


def test_step_on_a_miss_skips_disabled_exits(demo):
    b, rt, table = demo
    n = len(rt.exits)
    th = [0.0] * n
    th[3] = th[4] = 1.5  # disabled: no confidence reaches them
    th[2] = 1.0 - 1e-12  # enabled, but this head misses
    pol = PredictivePolicy(_head_forecaster(n, n - 1), th, on_miss="step")
    pol.bind(rt)
    state = SampleState(0)
    pol.start(state)
    state.heads = [0, 2]  # past the first forecast: step mode steps
    v = _view(rt, table, 0, 2)
    assert v.max_softmax() < th[2]
    assert pol.decide(v, state) is False and pol._target == 5


def _edited(b, edit):
    import copy

    from edgeexit.errors import CalibrationError

    cal = copy.deepcopy(b.calibration)
    edit(cal["predictive"])
    return cal, CalibrationError


def _disable_middle_exits(p):
    p["thresholds"][2:-1] = [2.0] * (len(p["thresholds"]) - 3)


def _disable_early_exits(p):
    p["thresholds"] = [2.0] * (len(p["thresholds"]) - 1) + [0.0]


def _tree_jumps_before_entry(p):
    p["entry_tree"]["jump"] = [0] * len(p["entry_tree"]["jump"])


def _entry_reads_block_0(p):
    p["entry_exit"] = 0


@pytest.mark.parametrize("edit, why", [
    (_disable_middle_exits, "which its thresholds disable"),  # its table and tree still named them: their heads ran
    (_disable_early_exits, "not that of exit 7"),  # the same, costing more than `full`
    (_tree_jumps_before_entry, "which its thresholds disable"),  # never reached: every sample ran to the end
    (_entry_reads_block_0, "not that of exit 1"),  # block 0 has block 1's channels: the shape check passed
])
def test_a_calibration_at_odds_with_its_thresholds_is_refused(demo, edit, why):
    """A hand-edited or half-refreshed calibration.json: each of these ran silently, costing more MACs
    than `full` or than the calibration it came from."""
    b, rt, _ = demo
    assert b.calibration["predictive"]["entry_exit"] == 1  # the demo's: exit 0 is disabled
    cal, err = _edited(b, edit)
    pol = PredictivePolicy.from_calibration(cal, len(rt.exits))
    with pytest.raises(err, match=why):
        pol.bind(rt)
    PredictivePolicy.from_calibration(b.calibration, len(rt.exits)).bind(rt)  # the shipped one binds


def test_a_calibration_without_entry_exit_reads_block_0():
    """Files from before entry_exit was recorded: their forecasters read exit 0's block."""
    pol = PredictivePolicy(Forecaster(w1=np.zeros((4, 2)), b1=np.zeros(2), w2=np.zeros((2, 3)), b2=np.zeros(3),
                                      mean=np.zeros(4), std=np.ones(4), n_exits=3, use_block_features=False),
                           [0.5, 0.5, 0.0], entry_exit=None)
    assert pol.entry_exit == 0 and not pol.entry_exit_recorded


@pytest.mark.parametrize("key, value", [("rounds", 3.9), ("start_exit", 2.7), ("rounds", "8")])
def test_pe_heuristic_refuses_fractional_rounds_and_start_exit(key, value):
    """int() ran rounds 3.9 as 3 and start_exit 2.7 as 2, silently (eenet refuses its fractional start_exit)."""
    import copy

    from edgeexit.errors import CalibrationError
    from edgeexit.policies.pe_heuristic import PEHeuristicPolicy

    b = load_bundle()
    cal = copy.deepcopy(b.calibration)
    cal["pe-heuristic"][key] = value
    with pytest.raises(CalibrationError, match="whole numbers"):
        PEHeuristicPolicy.from_calibration(cal, len(b.manifest.exits))
    PEHeuristicPolicy.from_calibration(b.calibration, len(b.manifest.exits))


def test_a_policy_built_without_entry_exit_binds_where_exit_0_is_disabled(demo):
    """A library caller that leaves entry_exit out gets the older files' reading (block 0), not a refusal for
    an entry exit it never chose."""
    b, rt, _ = demo
    shipped = PredictivePolicy.from_calibration(b.calibration, len(rt.exits))
    assert shipped.thresholds[0] > 1.0, "the demo calibration disables exit 0"
    PredictivePolicy(shipped.forecaster, shipped.thresholds, table=shipped.table).bind(rt)
