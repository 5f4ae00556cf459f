"""Calibrating every exit policy on a bundle's held-out calibration split, for one accuracy target.

Each calibrator returns the JSON-ready entry stored under its policy's name in calibration.json,
including what it reached on the calibration data. Policies are checked by replaying them over the
exit table with the runtime's own policy code (edgeexit.offline).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeexit.bundle import NOT_CALIBRATED
from edgeexit.calibration import (CROSS_FIT_FOLDS, MIN_CALIBRATION_SAMPLES, CalibrationData, ThresholdFit, calibrate_threshold,
                                  first_exit, fit_thresholds, folds, is_accuracy, threshold_cost)
from edgeexit.costmodel import SegmentLatency
from edgeexit.errors import CalibrationError
from edgeexit.forecaster import Forecaster, distill, distill_entry, fit, head_features, pooled_features, training_pairs
from edgeexit.jsonvalues import is_integer
from edgeexit.offline import replay
from edgeexit.policies.base import HeadView
from edgeexit.policies.confidence_head import ConfidenceHeadPolicy
from edgeexit.policies.eenet import (EENetPolicy, cross_fit, exit_figures, fit_for_budget, fit_scores, out_of_fold_exits,
                                     table_features, widen)
from edgeexit.policies.pe_heuristic import PEHeuristicPolicy, tau_from_logits
from edgeexit.policies.predictive import PredictivePolicy, enabled_exits, jump_cost_matrix
from edgeexit.runtime import Runtime


def _head_feature_table(rt: Runtime, data: CalibrationData) -> np.ndarray:
    t = data.table
    n, n_exits = t.pred.shape
    out = np.zeros((n, n_exits, 3))
    for i in range(n):
        for e in range(n_exits):
            out[i, e] = head_features(HeadView(e, t.logits_q[i, e], rt.decoders[e]), n_exits)
    return out


def _block_feature_table(rt: Runtime, data: CalibrationData, entry_exit: int) -> np.ndarray:
    block = rt.exit_blocks[entry_exit]
    spec = rt.bundle.blocks[block].output
    return np.stack([pooled_features(f, spec.scale, spec.zero_point) for f in rt.block_outputs(data.table, block)])


def forecast_metrics(rt: Runtime, policy: PredictivePolicy, data: CalibrationData, idx: np.ndarray, targets: np.ndarray) -> Dict[str, float]:
    """Exact-hit and within-one rates of the first forecast, and what misses cost (MACs), on ``idx``.

    The first forecast is the entry forecast where the policy has one (every sample gets it), else the
    one made at the first enabled head (only samples not confident there need it).
    """
    sub = data.subset(idx)
    r = replay(rt, policy, sub.table, sub.y)
    t = targets[idx]
    first = policy.first  # bound by replay
    need = np.ones(len(t), dtype=bool) if policy.entry is not None else t > first
    planned = r.planned[need]
    true = t[need]
    ideal = np.asarray(rt.macs_to_exit)[true] + np.asarray(rt.head_macs)[true]
    if policy.entry is None:
        ideal = ideal + rt.head_macs[first]
    extra = r.macs[need] - ideal
    over = planned > true
    under = planned < true
    return {
        "n_samples": len(t),
        "n_forecasts": int(need.sum()),
        "n_over": int(over.sum()),
        "n_under": int(under.sum()),
        "exact_hit_rate": float((planned == true).mean()) if need.any() else 1.0,
        "within_one_rate": float((np.abs(planned - true) <= 1).mean()) if need.any() else 1.0,
        "over_prediction_rate": float(over.mean()) if need.any() else 0.0,
        "under_prediction_rate": float(under.mean()) if need.any() else 0.0,
        "over_prediction_cost_macs": float(extra[over].mean()) if over.any() else 0.0,
        "under_prediction_cost_macs": float(extra[under].mean()) if under.any() else 0.0,
        "accuracy": r.accuracy(sub.y),
        "mean_macs": float(r.macs.mean()),
    }


RISKS = (1.0, 2.0, 4.0, 8.0, 16.0, 64.0, 1e9)  # 1e9: in effect never jump past the next exit


def _oof_replay(rt: Runtime, data: CalibrationData, parts: List[np.ndarray], policies: List[PredictivePolicy]) -> Tuple[float, float]:
    """Accuracy and mean MACs of the predictive policy where every sample is forecast by a model that
    never saw it in training (the forecasters cross-fitted). The acceptance thresholds are the whole split's,
    fitted on every sample, and the choices made on these figures tune them to the split too: they judge the
    forecasters, and are no held-out accuracy (`calibrate` prints none for predictive)."""
    correct, macs = 0, 0.0
    for idx, pol in zip(parts, policies):
        sub = data.subset(idx)
        r = replay(rt, pol, sub.table, sub.y)
        correct += int((r.pred == sub.y).sum())
        macs += float(r.macs.sum())
    n = len(data.y)
    return correct / n, macs / n


def calibrate_predictive(
    rt: Runtime, data: CalibrationData, thresholds: List[float], target: float, seed: int = 0,
    use_block_features: bool = True, hidden: int = 16, epochs: int = 600, k: int = CROSS_FIT_FOLDS,
) -> Dict[str, Any]:
    """Train the forecasters on where the threshold policy's exits say each sample can stop, and distill
    the head forecaster into a lookup table (what runs at inference).

    Both read the output of the first enabled exit's block: every sample runs that far anyway, and a
    deeper block shows more of how deep the sample will go than the first one does (on the demo the
    entry forecast saved 2.5% of threshold's MACs from block 1, 2.0% from block 0, exit 0 disabled).

    Two forecasters: the head forecaster (features of the head just evaluated, plus pooled block
    features) re-predicts after an unconfident head; the entry forecaster (pooled features of that
    exit's block only) forecasts before any head runs, so even the first head can be skipped.
    Choices that depend on forecast quality -- the over-prediction weights ``risk`` and ``entry_risk``,
    whether the entry forecaster is used at all, and any tightening of the acceptance thresholds -- are
    made on k-fold out-of-fold forecasts (each sample forecast by models built without it), so they are
    not fitted to the training data; the stored models come from the whole calibration split. Forecast
    metrics are the out-of-fold ones.
    """
    n_exits = len(rt.exits)
    th = np.asarray(thresholds)
    targets = first_exit(data.table.max_softmax >= th)
    hf = _head_feature_table(rt, data)
    enabled = enabled_exits(list(thresholds))
    entry_exit = enabled.index(True)  # threshold tightening below never disables an exit, so this stays first
    going_on = int((targets > entry_exit).sum())  # samples a forecast could matter for
    if going_on == 0:
        raise CalibrationError("at the accuracy target {:.2%} every calibration sample stops at exit {}, the first one the "
                               "thresholds enable, so there is nothing to forecast; {}".format(
                                   target, entry_exit, _forecast_advice(data, target)))
    bf = _block_feature_table(rt, data, entry_exit)

    Model = Tuple[Forecaster, np.ndarray, np.ndarray, Forecaster, np.ndarray]

    def train(idx: np.ndarray) -> Model:
        x, cur, tgt = training_pairs(hf[idx], bf[idx] if use_block_features else None, targets[idx], n_exits)
        head = fit(x, cur, tgt, n_exits, use_block_features, hidden=hidden, epochs=epochs, seed=seed)
        first = np.full(len(idx), -1, dtype=np.int64)  # before any head: no exit is masked
        entry = fit(bf[idx], first, targets[idx], n_exits, True, hidden=hidden, epochs=epochs, seed=seed)
        return head, x, cur, entry, bf[idx]

    def policies(models: List[Model], th_list: List[float], risk: float, entry_risk: Optional[float]) -> List[PredictivePolicy]:
        on = enabled_exits(th_list)
        macs, heads = list(rt.macs_to_exit), list(rt.head_macs)
        cost = jump_cost_matrix(macs, heads, risk, on)
        out = []
        for m, x, cur, en, pooled in models:
            # What runs at inference is the distilled tree, so the tree is what out-of-fold replay judges.
            tree = None if entry_risk is None else distill_entry(en, pooled, jump_cost_matrix(macs, heads, entry_risk, on), on)
            table = distill(m, x, cur, cost, enabled=on)  # forecasts only exits the thresholds enable, as the MLP does live
            out.append(PredictivePolicy(m, th_list, risk=risk, table=table, entry=None if entry_risk is None else en,
                                        entry_risk=1.0 if entry_risk is None else entry_risk, entry_tree=tree, entry_exit=entry_exit))
        return out

    parts = folds(len(data.y), k, seed)
    everyone = np.arange(len(data.y))
    try:
        models = [train(np.setdiff1d(everyone, f)) for f in parts]
    except CalibrationError:  # training_pairs: a fold's training part holds no sample past the first exit
        raise CalibrationError("at the accuracy target {:.2%} only {} calibration samples go past exit {}, too few to "
                               "train a forecaster on {} folds; {}".format(
                                   target, going_on, entry_exit, k, _forecast_advice(data, target))) from None

    def best_of(candidates: List[Tuple[float, Optional[float]]]) -> Tuple[float, Optional[float]]:
        best = None  # type: Optional[Tuple[float, Tuple[float, Optional[float]]]]
        for risk, entry_risk in candidates:
            acc, macs = _oof_replay(rt, data, parts, policies(models, list(thresholds), risk, entry_risk))
            if acc >= target and (best is None or macs < best[0] - 1e-6):  # ties: the earlier (more cautious) one
                best = (macs, (risk, entry_risk))
        return best[1] if best is not None else (RISKS[-1], None)

    risk, _ = best_of([(r, None) for r in RISKS])
    # None first: the entry forecaster must beat always running the first enabled head to be used.
    _, entry_risk = best_of([(risk, None)] + [(risk, r) for r in RISKS])
    final_th = list(thresholds)
    for delta in np.linspace(0.0, 1.0, 41):
        # the out-of-fold figures stored are always those of the thresholds stored: where no step reaches the
        # target, the most cautious one (and calibrate shows its out-of-fold accuracy below the target)
        final_th = [t if i == n_exits - 1 or t > 1.0 else t + delta * (1.0 - t) for i, t in enumerate(thresholds)]
        acc, macs = _oof_replay(rt, data, parts, policies(models, final_th, risk, entry_risk))
        if acc >= target:
            break
    metrics = _merge_metrics([forecast_metrics(rt, pol, data, f, targets)
                              for pol, f in zip(policies(models, final_th, risk, entry_risk), parts)])
    fc, x, cur, entry, pooled = train(everyone)
    for m in (fc, entry):
        m.meta.update({"trained_on": "calibration split, {} samples".format(len(everyone)),
                       "validated_on": "{}-fold out-of-fold forecasts on the calibration split".format(k)})
    final = policies([(fc, x, cur, entry, pooled)], final_th, risk, entry_risk)[0]
    r = replay(rt, final, data.table, data.y)
    return {
        "forecaster": fc.to_dict(),
        "entry_forecaster": entry.to_dict() if entry_risk is not None else None,
        "entry_tree": final.entry_tree.to_dict() if final.entry_tree is not None else None,
        "forecaster_params": fc.n_params + (entry.n_params if entry_risk is not None else 0),
        "table": final.table.to_dict() if final.table is not None else None,
        "risk": risk,
        "entry_risk": entry_risk,
        "entry_exit": entry_exit,
        "thresholds": final_th,
        "enabled_exits": enabled,
        "target_accuracy": target,
        "forecast_metrics": metrics,
        # the forecasters judged out of fold, the thresholds in-sample: not threshold's out_of_fold_accuracy
        "forecaster_out_of_fold_accuracy": acc,
        "forecaster_out_of_fold_mean_macs": macs,
        "accuracy": r.accuracy(data.y),
        "mean_macs": float(r.macs.mean()),
    }


def _forecast_advice(data: CalibrationData, target: float) -> str:
    """What to do when the exits do not spread: the forecaster can only pay where samples go past the first
    enabled exit. A higher target is suggested only when it really spreads them (the highest target that
    threshold can reach is the final exit's accuracy); otherwise it would lead the user in circles."""
    use = "predictive would exit as threshold does: use threshold instead"
    if target < data.full_accuracy:
        hi = calibrate_threshold(data, data.full_accuracy).thresholds
        exits = first_exit(data.table.max_softmax >= np.asarray(hi))
        if (exits > enabled_exits(hi).index(True)).any():
            return "{}, or calibrate for a higher target, up to the final exit's {:.2%} (--target-accuracy)".format(use, data.full_accuracy)
    return "{} (no target up to the final exit's {:.2%} spreads the exits)".format(use, data.full_accuracy)


# What each per-fold figure is an average over, so that the pooled figure is the one over every sample.
_MERGE_WEIGHT = {"over_prediction_cost_macs": "n_over", "under_prediction_cost_macs": "n_under",
                 "accuracy": "n_samples", "mean_macs": "n_samples"}
_COUNTS = ("n_samples", "n_forecasts", "n_over", "n_under")


def _merge_metrics(parts: List[Dict[str, float]]) -> Dict[str, float]:
    """Per-fold metrics pooled over the folds: each average weighted by what it averages over (forecasts,
    over- or under-predictions, samples)."""
    out: Dict[str, float] = {key: sum(p[key] for p in parts) for key in _COUNTS}
    for key in parts[0]:
        if key in _COUNTS:
            continue
        by = _MERGE_WEIGHT.get(key, "n_forecasts")
        n = out[by]
        out[key] = float(sum(p[key] * p[by] for p in parts) / n) if n else 0.0
    return out


def calibrate_pe_heuristic(rt: Runtime, data: CalibrationData, target: float, rounds: int = 8) -> Dict[str, Any]:
    """tau from the calibration logits; the cheapest start exit (the public code's start_layer, before which
    no exit is checked) and beta (on a log grid) that meet the target. A start exit whose own cost, block and
    head, already reaches the cheapest mean found is not tried."""
    tau = tau_from_logits(data.table.logits)
    best: Optional[Dict[str, Any]] = None
    for start in range(len(data.head_macs)):
        if best is not None and data.macs_to_exit[start] + data.head_macs[start] >= best["mean_macs"]:
            continue
        for beta in np.geomspace(0.25, 64.0, 49):
            r = replay(rt, PEHeuristicPolicy(tau, float(beta), rounds, start), data.table, data.y)
            acc = r.accuracy(data.y)
            if acc >= target and (best is None or r.macs.mean() < best["mean_macs"]):
                best = {"tau": tau, "beta": float(beta), "rounds": rounds, "start_exit": start, "accuracy": acc,
                        "mean_macs": float(r.macs.mean())}
    if best is None:
        raise CalibrationError("pe-heuristic cannot reach the accuracy target {:.2%} for any beta; lower the target".format(target))
    best["target_accuracy"] = target
    return best


def calibrate_eenet(rt: Runtime, data: CalibrationData, target: float, budget_macs: Optional[float] = None, seed: int = 0,
                    budget_ms: Optional[float] = None, latency: Optional[SegmentLatency] = None,
                    cross_fit_k: int = 0) -> Dict[str, Any]:
    """Score models per exit, then thresholds on the scores: least cost for the accuracy target, or the
    most accurate schedule whose mean cost fits a budget -- ``budget_macs``, or ``budget_ms`` counted in
    the per-segment ``latency`` table (a profile's, or measured on this host).

    The chain may start at a later exit (``start_exit``: the heads before it never run): every start
    s = 0..E-1 is fitted the same way on exits s.. (exit s's previous score 0; s = E-1 is full
    inference, where no early exit pays), and the one kept is the
    cheapest on the calibration split that meets the target -- for a budget, the most accurate within it,
    then the cheapest -- ties to the earlier start. A weak first head that costs more than it saves (the
    demo's exit 0) is dropped, as the threshold policy disables an exit that cannot pay.

    Features and scores come from the functions the runtime's EENetPolicy runs, so the thresholds are
    fitted on the very scores it compares. With ``cross_fit_k`` > 1, a k-fold cross-fit (score models and
    thresholds refitted without each fold, for the chosen start) estimates how the target or the budget
    holds on unseen data: ``out_of_fold_accuracy`` and ``out_of_fold_mean_macs`` (and
    ``out_of_fold_mean_ms`` for a budget in ms)."""
    if budget_macs is not None and budget_ms is not None:
        raise CalibrationError("give the eenet budget in MACs or in ms, not both")
    if budget_ms is not None and latency is None:
        raise CalibrationError("a budget in ms needs segment latencies: pass a profile from `edgeexit profile` or measure them")
    feats = table_features(data.table.logits)
    correct = data.correct
    n_exits = correct.shape[1]
    ms_to_exit, head_ms = latency.to_exit_and_heads(rt.bundle, rt.exit_blocks) if latency is not None else (None, None)
    budget = budget_ms if budget_ms is not None else budget_macs
    to_exit, heads, unit = ((ms_to_exit, head_ms, "ms") if budget_ms is not None
                            else (data.macs_to_exit, data.head_macs, "MACs"))
    macs, head_macs = list(data.macs_to_exit), list(data.head_macs)
    to_exit, heads = list(to_exit), list(heads)
    # The least any start can cost: every sample leaving at its first head (the last start: full inference).
    floor = [to_exit[s] + heads[s] for s in range(n_exits)]
    if budget is not None and budget < min(floor):
        s_min = int(np.argmin(floor))
        raise CalibrationError(
            "a budget of {:.4g} {} is below the cost of the cheapest schedule, every sample exiting at exit {} ({:.4g} {}); "
            "raise the budget".format(budget, unit, s_min, floor[s_min], unit))

    def fit_from(s: int) -> Tuple[np.ndarray, ThresholdFit]:
        w, scores = fit_scores(feats[:, s:], correct[:, s:], seed=seed)
        if budget is not None:
            return w, fit_for_budget(scores, correct[:, s:], to_exit[s:], heads[s:], budget, unit=unit)
        return w, fit_thresholds(scores, correct[:, s:], macs[s:], head_macs[s:], target, skip_disabled=False)  # scores chain: every head from s runs

    def better(f: ThresholdFit, than: ThresholdFit) -> bool:
        cheaper = f.mean_macs < than.mean_macs - 1e-9 * max(1.0, than.mean_macs)  # strictly: ties keep the earlier start
        if budget is None:
            return cheaper
        return f.accuracy > than.accuracy or (f.accuracy == than.accuracy and cheaper)

    best: Optional[Tuple[int, np.ndarray, ThresholdFit]] = None
    # The last start is no chain, full inference: kept where every chain costs more (exits too weak to pay) or,
    # for a budget, where it is the most accurate schedule that fits.
    for s in range(n_exits):
        # Prune: a start whose first head alone costs at least the best schedule's mean cannot be cheaper; for
        # a budget, one whose first head exceeds it cannot fit it (a start under it may still be more accurate).
        if budget is not None and floor[s] > budget:
            continue
        if budget is None and best is not None and floor[s] >= best[2].mean_macs:
            continue
        w_s, f_s = fit_from(s)  # the same target or budget for every start: an error at one is an error at all
        if best is None or better(f_s, best[2]):
            best = (s, w_s, f_s)
    assert best is not None  # start 0 (target) or the cheapest start (budget, checked above) is always fitted
    start, weights, f = best
    sub_macs, sub_heads = macs[start:], head_macs[start:]
    full_w, full_th = widen(weights, f.thresholds, start)
    r = replay(rt, EENetPolicy(full_w, full_th, start), data.table, data.y)
    out = {"weights": full_w, "thresholds": full_th, "start_exit": start, "budget_macs": None,
           "target_accuracy": target, "accuracy": r.accuracy(data.y), "mean_macs": float(r.macs.mean())}
    sub_feats, sub_correct = feats[:, start:], correct[:, start:]
    if budget is not None:
        out.update({"budget_macs": None if budget_macs is None else float(budget_macs), "target_accuracy": None})
        if cross_fit_k > 1:  # the budget is met in-sample by construction: what unseen samples spend
            ex = out_of_fold_exits(sub_feats, sub_correct, cross_fit_k, seed, lambda sc, c: fit_for_budget(
                sc, c, to_exit[start:], heads[start:], budget, unit=unit).thresholds)
            acc, oof_macs = exit_figures(ex, sub_correct, sub_macs, sub_heads)
            out.update({"out_of_fold_accuracy": acc, "out_of_fold_mean_macs": oof_macs, "out_of_fold_k": cross_fit_k})
            if budget_ms is not None:
                out["out_of_fold_mean_ms"] = exit_figures(ex, sub_correct, ms_to_exit[start:], head_ms[start:])[1]
    elif cross_fit_k > 1:
        acc, oof_macs = cross_fit(sub_feats, sub_correct, sub_macs, sub_heads, target, cross_fit_k, seed)
        out.update({"out_of_fold_accuracy": acc, "out_of_fold_mean_macs": oof_macs, "out_of_fold_k": cross_fit_k})
    if latency is not None:
        # Every head from the start to the exit runs (the scores chain), as threshold_cost counts it on the chain.
        ms = threshold_cost(r.exits - start, ms_to_exit[start:], head_ms[start:])
        out.update({"budget_ms": budget_ms, "mean_ms": float(ms.mean()), "latency_source": latency.source})
    return out


def calibrate_confidence_head(rt: Runtime, data: CalibrationData, target: float) -> Optional[Dict[str, Any]]:
    """Thresholds on the PTEENet confidence heads; None where the bundle has none."""
    if data.table.conf_q is None:
        return None
    fitres = fit_thresholds(data.table.confidence, data.correct, data.macs_to_exit, data.head_macs, target)
    r = replay(rt, ConfidenceHeadPolicy(fitres.thresholds), data.table, data.y)
    return {"thresholds": fitres.thresholds, "target_accuracy": target, "accuracy": r.accuracy(data.y), "mean_macs": float(r.macs.mean())}


FITTED = ("threshold", "predictive", "pe-heuristic", "eenet", "confidence-head")
UNFITTED = ("full", "oracle")  # named in a bench's --policies, fitted by nothing


def _policy_names(policies: Any) -> Optional[List[Any]]:
    """``policies`` as a list: one name, or any iterable of names (a generator is read once, here)."""
    if policies is None:
        return None
    if isinstance(policies, str):
        return [policies]
    try:
        return list(policies)
    except TypeError:
        return [policies]


def _check_fit_args(target: Any, seed: Any, policies: Any) -> None:
    """A library caller's target, seed and policy names, checked as the CLI's options are (a NaN target fitted
    "never exit early" and was saved as NaN; a bad seed was a numpy ValueError; an unknown name was skipped)."""
    if not is_accuracy(target):
        raise CalibrationError("target={!r} is not an accuracy; give a number from 0 to 1 (0.95 for 95%)".format(target))
    if not is_integer(seed) or not 0 <= seed <= 2**32 - 1:
        raise CalibrationError("seed={!r} is not a seed; give an integer from 0 to 2**32 - 1".format(seed))
    if policies is not None:
        unknown = [p for p in policies if p not in FITTED + UNFITTED]
        if unknown:
            raise CalibrationError("policies={!r}: {} not a policy; give a list of: {}".format(
                policies, ", ".join(map(repr, unknown)), ", ".join(FITTED + UNFITTED)))


def calibrate_all(rt: Runtime, data: CalibrationData, target: float, seed: int = 0, metric: str = "max_softmax",
                  eenet_budget_macs: Optional[float] = None, eenet_budget_ms: Optional[float] = None,
                  latency: Optional[SegmentLatency] = None,
                  progress: Optional[Callable[[str, int, int], None]] = None,
                  policies: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Every policy for one target (eenet for its budget where one is given); returns the calibration.json
    entries. ``progress(policy, done, total)`` is told before each policy is fitted, and once at the end.
    ``policies``: fit only these (threshold always: the others build on it); None: all.

    threshold must fit (the others build on it, and its error says how to change the target). Any other
    policy that cannot be fitted at this target is left out, with the reason under ``NOT_CALIBRATED``,
    rather than failing them all: e.g. a first exit that meets the target alone leaves predictive
    nothing to forecast, at any target. An explicit eenet budget that cannot be met still fails.
    """
    policies = _policy_names(policies)
    _check_fit_args(target, seed, policies)
    n = len(data.y)
    if n < MIN_CALIBRATION_SAMPLES:  # fewer leaves cross-fit folds empty: IndexErrors and NaN means, not fits
        raise CalibrationError("the calibration split has {} samples; calibrate needs at least {}: export the bundle with a "
                               "larger calibration split (calib.npz)".format(n, MIN_CALIBRATION_SAMPLES))
    out: Dict[str, Any] = {}
    notes: Dict[str, str] = {}
    tell = progress or (lambda stage, done, n: None)
    budget = eenet_budget_macs is not None or eenet_budget_ms is not None
    fits: List[Tuple[str, str, Callable[[], Optional[Dict[str, Any]]], bool]] = [
        ("predictive", "predictive (training the forecasters)",
         lambda: calibrate_predictive(rt, data, max_softmax_th, target, seed=seed), True),
        ("pe-heuristic", "pe-heuristic", lambda: calibrate_pe_heuristic(rt, data, target), True),
        ("eenet", "eenet", lambda: calibrate_eenet(rt, data, target, eenet_budget_macs, seed, eenet_budget_ms, latency,
                                                   cross_fit_k=CROSS_FIT_FOLDS), not budget),
        ("confidence-head", "confidence-head", lambda: calibrate_confidence_head(rt, data, target), True),
    ]
    fits = [f for f in fits if (policies is None or f[0] in policies)
            and (f[0] != "confidence-head" or data.table.conf_q is not None)]  # a bundle without those heads
    total = len(fits) + 1
    tell("threshold", 0, total)
    thr = calibrate_threshold(data, target, metric, cross_fit=CROSS_FIT_FOLDS, seed=seed)
    out["threshold"] = thr.to_dict()
    max_softmax_th = thr.thresholds if metric == "max_softmax" else calibrate_threshold(data, target).thresholds
    for done, (name, stage, fit_one, may_skip) in enumerate(fits, start=1):
        tell(stage, done, total)
        try:
            entry = fit_one()
        except CalibrationError as err:
            if not may_skip:
                raise
            notes[name] = str(err)
            continue
        if entry is not None:  # None: confidence-head on a bundle without confidence heads
            out[name] = entry
    if notes:
        out[NOT_CALIBRATED] = notes
    tell("done", total, total)
    return out
