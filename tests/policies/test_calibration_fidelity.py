"""What calibration reports is what the runtime does: every fitted threshold sits between two distinct
scores, scores are computed by the runtime's own code, and the out-of-fold estimates of how a fit
generalizes are what an independent replay of each fold's fit on its held-out fold gives."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.calibration import (CalibrationData, calibrate_threshold, collect, first_exit, fit_thresholds, folds,
                                  normalized_entropy, target_from, threshold_cost, threshold_scores)
from edgeexit.offline import replay
from edgeexit.policies.base import HeadView, SampleState
from edgeexit.policies.eenet import EENetPolicy, cross_fit, fit_scores, table_features, widen
from edgeexit.policies.simple import ThresholdPolicy
from edgeexit.policy_calibration import calibrate_eenet
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend

# Slices of the demo's calibration split (start, n) and accuracy drops (pp) where the auditor saw a sample on
# its threshold flip at run time: entropy (0, 201) at 0.25 pp and the whole split at 0.25 pp; eenet (0, 201)
# at 4 pp fell below its target.
CASES = [(0, 201, 0.25), (0, 201, 4.0), (0, 1000, 0.25), (199, 401, 1.0)]


@pytest.fixture(scope="module")
def demo() -> Tuple[Runtime, CalibrationData]:
    b = load_bundle()
    rt = Runtime(b)
    return rt, collect(rt, b.split("calibration"))


def _slice(data: CalibrationData, start: int, n: int) -> CalibrationData:
    return data.subset(np.arange(start, start + n))


def test_calibration_scores_are_the_runtimes_bit_for_bit(demo):
    rt, data = demo
    t = data.table
    n, n_exits = t.pred.shape
    views = [[HeadView(e, t.logits_q[i, e], rt.decoders[e]) for e in range(n_exits)] for i in range(n)]
    live_entropy = np.array([[v.entropy() for v in row] for row in views])
    assert np.array_equal(normalized_entropy(t.logits), live_entropy)
    assert np.array_equal(threshold_scores(data, "entropy"), live_entropy)
    weights, scores = fit_scores(table_features(t.logits), data.correct)
    pol = EENetPolicy(weights.tolist(), [0.0] * n_exits)
    live = np.zeros_like(scores)
    for i, row in enumerate(views):
        state = SampleState(i)
        pol.start(state)
        for e, v in enumerate(row):
            pol.decide(v, state)  # every head, as the runtime chains the scores
            live[i, e] = pol._prev
    assert np.array_equal(scores, live)


@pytest.mark.parametrize("metric", ["max_softmax", "entropy"])
@pytest.mark.parametrize("start,n,drop", CASES)
def test_threshold_replay_reproduces_what_calibration_reports(demo, metric, start, n, drop):
    rt, data = demo
    sub = _slice(data, start, n)
    target = target_from(sub, drop)
    fit = calibrate_threshold(sub, target, metric)
    r = replay(rt, ThresholdPolicy(fit.thresholds, metric), sub.table, sub.y)
    scores = threshold_scores(sub, metric)
    th = np.asarray(fit.thresholds)
    assert np.array_equal(first_exit(scores >= th if metric == "max_softmax" else scores <= th), r.exits)
    assert r.accuracy(sub.y) == fit.accuracy >= target
    assert float(r.macs.mean()) == pytest.approx(fit.mean_macs, rel=1e-12)


@pytest.mark.parametrize("start,n,drop", CASES)
def test_eenet_replay_reproduces_the_fit_and_meets_its_target(demo, start, n, drop):
    rt, data = demo
    sub = _slice(data, start, n)
    target = target_from(sub, drop)
    entry = calibrate_eenet(rt, sub, target)
    s = entry["start_exit"]
    r = replay(rt, EENetPolicy(entry["weights"], entry["thresholds"], s), sub.table, sub.y)
    # the scores the thresholds were fitted on: the chain from the start exit, its first previous score 0
    _, scores = fit_scores(table_features(sub.table.logits)[:, s:], sub.correct[:, s:])
    assert np.array_equal(first_exit(scores >= np.asarray(entry["thresholds"][s:])) + s, r.exits)
    assert all(min(h) >= s for h in r.heads)
    assert r.accuracy(sub.y) == entry["accuracy"] >= target
    assert float(r.macs.mean()) == entry["mean_macs"]


def _tied_scores(rng: np.random.RandomState, n: int, n_exits: int) -> Tuple[np.ndarray, np.ndarray]:
    """Scores on a coarse grid (int8 logits make real scores just as discrete): every quantile the search
    tries is some sample's exact score, and many samples share it. Later exits are more confident and
    more often right."""
    level = rng.randint(0, 12, size=(n, n_exits)) + np.arange(n_exits)[None, :] * 2
    scores = np.minimum(level / (12.0 + 2 * n_exits), 1.0)
    correct = rng.uniform(size=(n, n_exits)) < 0.35 + 0.6 * scores
    correct[:, -1] |= rng.uniform(size=n) < 0.8
    return scores, correct


@pytest.mark.parametrize("metric", ["max_softmax", "entropy"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thresholds_fitted_on_tied_scores_keep_off_every_score(metric, seed):
    rng = np.random.RandomState(seed)
    n_exits = 6
    confident, correct = _tied_scores(rng, 400, n_exits)
    scores = confident if metric == "max_softmax" else 1.0 - confident  # entropy: low = confident
    macs = list(np.cumsum(rng.randint(50, 150, n_exits)) * 1000)
    heads = list(rng.randint(5, 20, n_exits) * 1000)
    target = float(correct[:, -1].mean()) - 0.03
    fit = fit_thresholds(scores, correct, macs, heads, target, metric)
    th = np.asarray(fit.thresholds)
    enabled = th[:-1] <= 1.0 if metric == "max_softmax" else th[:-1] >= 0.0
    assert enabled.any(), "the data must let some exit fire, or there is nothing to check"
    for e in np.flatnonzero(enabled):
        gap = np.diff(np.unique(scores[:, e])).min()
        assert np.abs(scores[:, e] - th[e]).min() >= 0.5 * gap - 1e-12, (e, th[e])

    def outcome(s: np.ndarray) -> Tuple[np.ndarray, float, float]:
        ex = first_exit(s >= th if metric == "max_softmax" else s <= th)
        on = np.append(enabled, True)
        return ex, float(correct[np.arange(len(ex)), ex].mean()), float(threshold_cost(ex, macs, heads, on).mean())

    exits, acc, cost = outcome(scores)
    assert acc == fit.accuracy >= target and cost == pytest.approx(fit.mean_macs, rel=1e-12)
    for sign in (-1.0, 1.0):  # a runtime score a hair off, either way, exits where calibration said
        assert np.array_equal(outcome(scores + sign * 1e-8)[0], exits)


def _oof_by_replay(rt: Runtime, data: CalibrationData, target: float, policy: str, seed: int) -> Tuple[float, float]:
    """Pooled out-of-fold accuracy and mean MACs, each fold fitted on the others (for the same drop from their
    final exit) and replayed with the runtime's policy code on the held-out fold."""
    drop = data.full_accuracy - target
    hits, macs = 0, 0.0
    parts = folds(len(data.y), 4, seed)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(data.y)))
    for held in parts:
        train = data.subset(np.setdiff1d(np.arange(len(data.y)), held))
        test = data.subset(held)
        goal = train.full_accuracy - drop
        if policy == "eenet":
            # the cross-fit is of the start calibration chose (the folds refit scores and thresholds, not the start)
            k = calibrate_eenet(rt, data, target, seed=seed)["start_exit"]
            w, s = fit_scores(table_features(train.table.logits)[:, k:], train.correct[:, k:], seed=seed)
            th = fit_thresholds(s, train.correct[:, k:], train.macs_to_exit[k:], train.head_macs[k:], goal,
                                skip_disabled=False).thresholds
            pol = EENetPolicy(*widen(w, th, k), k)
        else:
            pol = ThresholdPolicy(calibrate_threshold(train, goal, policy).thresholds, policy)
        r = replay(rt, pol, test.table, test.y)
        hits += int((r.pred == test.y).sum())
        macs += float(r.macs.sum())
    return hits / len(data.y), macs / len(data.y)


@pytest.mark.parametrize("policy", ["max_softmax", "entropy", "eenet"])
def test_out_of_fold_estimate_is_an_independent_replay_of_each_fold(demo, policy):
    rt, data = demo
    sub = _slice(data, 0, 600)
    target = target_from(sub, 0.5)

    def estimate(seed: int) -> Tuple[float, float]:
        if policy == "eenet":
            e = calibrate_eenet(rt, sub, target, seed=seed, cross_fit_k=4)
            assert e["out_of_fold_k"] == 4
            return e["out_of_fold_accuracy"], e["out_of_fold_mean_macs"]
        f = calibrate_threshold(sub, target, policy, cross_fit=4, seed=seed)
        assert f.out_of_fold_k == 4 and f.to_dict()["out_of_fold_accuracy"] == f.out_of_fold_accuracy
        return f.out_of_fold_accuracy, f.out_of_fold_mean_macs  # type: ignore[return-value]

    acc, macs = estimate(3)
    want_acc, want_macs = _oof_by_replay(rt, sub, target, policy, 3)
    assert acc == pytest.approx(want_acc, abs=1e-12) and macs == pytest.approx(want_macs, rel=1e-12)
    assert estimate(3) == (acc, macs)  # deterministic for a seed
    assert [f.tolist() for f in folds(600, 4, 3)] != [f.tolist() for f in folds(600, 4, 4)]


def test_eenet_cross_fit_needs_a_sample_per_fold():
    from edgeexit.errors import CalibrationError

    with pytest.raises(CalibrationError, match="has 3 samples"):
        cross_fit(np.zeros((3, 2, 3)), np.ones((3, 2), dtype=bool), [1, 2], [1, 1], 0.5, 4)


@pytest.mark.parametrize("budget_macs", [1.0e6, 1.5e6])
def test_an_eenet_budget_is_judged_out_of_fold_too(demo, budget_macs):
    """A budget is met exactly in-sample, by construction, and was never checked on samples the fit did not see
    (the evaluation split spent 3-4% over it). The estimate is an independent replay of each fold, fitted to the
    budget on the others."""
    from edgeexit.policies.eenet import fit_for_budget

    rt, data = demo
    sub = _slice(data, 0, 600)
    e = calibrate_eenet(rt, sub, 0.0, budget_macs=budget_macs, seed=3, cross_fit_k=4)
    assert e["mean_macs"] <= budget_macs and e["out_of_fold_k"] == 4
    hits, macs = 0, 0.0
    for held in folds(len(sub.y), 4, 3):
        train, test = sub.subset(np.setdiff1d(np.arange(len(sub.y)), held)), sub.subset(held)
        k = e["start_exit"]
        w, s = fit_scores(table_features(train.table.logits)[:, k:], train.correct[:, k:], seed=3)
        th = fit_for_budget(s, train.correct[:, k:], train.macs_to_exit[k:], train.head_macs[k:], budget_macs).thresholds
        r = replay(rt, EENetPolicy(*widen(w, th, k), k), test.table, test.y)
        hits += int((r.pred == test.y).sum())
        macs += float(r.macs.sum())
    assert e["out_of_fold_accuracy"] == pytest.approx(hits / len(sub.y), abs=1e-12)
    assert e["out_of_fold_mean_macs"] == pytest.approx(macs / len(sub.y), rel=1e-12)


def test_eenet_takes_the_highest_seed_the_cli_accepts(demo):
    """Each exit's score model was seeded with seed + k: --seed 4294967295 (in the option's range) went past
    numpy's and ended calibrate in a traceback."""
    rt, data = demo
    sub = _slice(data, 0, 200)
    w, _ = fit_scores(table_features(sub.table.logits), sub.correct, seed=2**32 - 1)
    assert np.isfinite(w).all()


def test_pooled_forecast_metrics_weigh_each_average_by_what_it_averages():
    """Folds were pooled by their forecast counts: an over-prediction cost (an average over the fold's
    over-predictions) and accuracy (over all its samples, forecast or not) came out wrong."""
    from edgeexit.policy_calibration import _merge_metrics

    a = {"n_samples": 10, "n_forecasts": 4, "n_over": 1, "n_under": 2, "exact_hit_rate": 0.25, "over_prediction_cost_macs": 100.0,
         "under_prediction_cost_macs": 10.0, "accuracy": 1.0, "mean_macs": 5.0}
    b = {"n_samples": 10, "n_forecasts": 6, "n_over": 3, "n_under": 1, "exact_hit_rate": 0.5, "over_prediction_cost_macs": 200.0,
         "under_prediction_cost_macs": 40.0, "accuracy": 0.5, "mean_macs": 15.0}
    m = _merge_metrics([a, b])
    assert (m["n_samples"], m["n_forecasts"], m["n_over"], m["n_under"]) == (20, 10, 4, 3)
    assert m["exact_hit_rate"] == pytest.approx((0.25 * 4 + 0.5 * 6) / 10)
    assert m["over_prediction_cost_macs"] == pytest.approx((100 + 3 * 200) / 4)
    assert m["under_prediction_cost_macs"] == pytest.approx((2 * 10 + 40) / 3)
    assert m["accuracy"] == pytest.approx(0.75) and m["mean_macs"] == pytest.approx(10.0)


def test_a_drop_in_points_is_a_hundredth_of_accuracy(demo):
    """Every other test takes its target from target_from itself, so a wrong scale passed them all (mutation)."""
    _, data = demo
    assert target_from(data, 0.25) == pytest.approx(data.full_accuracy - 0.0025, abs=1e-12)
    assert target_from(data, 0.0) == data.full_accuracy
    assert target_from(data, 1.0, target_accuracy=0.9) == 0.9


@pytest.mark.parametrize("metric", ["max_softmax", "entropy"])
def test_no_drop_still_exits_early_where_that_loses_nothing(demo, metric):
    """The target is met at equality: with no drop allowed the fit still takes the early exits that keep the
    final exit's accuracy exactly (a strict comparison left every sample at the final exit)."""
    rt, data = demo
    fit = calibrate_threshold(data, target_from(data, 0.0), metric)
    assert fit.accuracy == data.full_accuracy
    assert fit.mean_macs < 0.9 * data.macs_to_exit[-1]


def test_a_threshold_between_scores_one_float_step_apart_keeps_every_outcome():
    """Review finding: the midpoint of two scores one ulp apart rounded onto the failing one, which then passed;
    calibration stopped on an assert (a traceback). The threshold now stays where the passing score is."""
    import numpy as np

    from edgeexit.calibration import between_scores

    lo = 0.7
    hi = float(np.nextafter(lo, 1.0))
    column = np.array([0.1, lo, hi, 0.9])
    t = between_scores(column, hi)
    assert ((column >= t) == (column >= hi)).all() and lo < t <= hi
