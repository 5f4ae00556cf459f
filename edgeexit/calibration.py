"""Fitting exit thresholds on held-out data for an accuracy target, at the least mean MACs."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Real
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

import numpy as np

from edgeexit.errors import CalibrationError
from edgeexit.policies.base import normalized_entropy_of, softmax_of

if TYPE_CHECKING:  # pragma: no cover
    from edgeexit.bundle.data import Samples
    from edgeexit.runtime import ExitTable, Runtime


@dataclass
class ThresholdFit:
    """Per-exit thresholds and what they achieved on the data they were fitted on."""

    metric: str
    thresholds: List[float]
    target_accuracy: float
    accuracy: float
    mean_macs: float
    full_accuracy: float
    full_macs: int
    n: int
    # The same fit judged on data it did not see (k-fold cross-fit, see calibrate_threshold); None where
    # not estimated. In-sample ``accuracy`` sits at the target by construction, new data tends to fall below.
    out_of_fold_accuracy: Optional[float] = None
    out_of_fold_mean_macs: Optional[float] = None
    out_of_fold_k: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)


#: folds of the cross-fits that estimate how a calibration generalizes (threshold, eenet, predictive)
CROSS_FIT_FOLDS = 4
#: the smallest calibration split calibrate accepts: two samples in each cross-fit fold, so every fold's
#: fit and every held-out fold has data (fewer ends in empty folds, NaN means and numpy warnings)
MIN_CALIBRATION_SAMPLES = 2 * CROSS_FIT_FOLDS


def folds(n: int, k: int, seed: int) -> List[np.ndarray]:
    """``k`` disjoint sorted index sets covering range(n), seeded (the same seed gives the same folds)."""
    order = np.random.RandomState(seed).permutation(n)
    return [np.sort(order[i::k]) for i in range(k)]


def fold_target(target: float, full_accuracy: float, train_final_correct: np.ndarray) -> float:
    """The accuracy a cross-fit fold is fitted for: the same drop from its training part's final exit as
    ``target`` is from the whole split's (``full_accuracy``). The absolute target would not do: a quarter
    of the samples held out moves the final exit's accuracy by more than a typical drop (on the demo, two
    of four training parts fall below a 0.25 pp target), and such a part could not be fitted at all."""
    drop = max(0.0, full_accuracy - target)
    return float(np.mean(train_final_correct)) - drop  # x - d <= x: never above the part's final exit


def first_exit(passes: np.ndarray) -> np.ndarray:
    """Index of the first True per row; the last column is forced True (the final exit)."""
    p = passes.copy()
    p[:, -1] = True
    return np.argmax(p, axis=1)


def threshold_cost(
    exits: np.ndarray, macs_to_exit: Sequence[int], head_macs: Sequence[int], enabled: Optional[np.ndarray] = None
) -> np.ndarray:
    """MACs of the threshold policy per sample: blocks to the exit plus every head up to it.

    ``enabled`` (E,) marks the heads the policy evaluates: one whose threshold can never pass is
    skipped (None: every head runs). A sample's own exit is always enabled.
    """
    hm = np.asarray(head_macs, dtype=np.float64)
    if enabled is not None:
        hm = np.where(enabled, hm, 0.0)
    return np.asarray(macs_to_exit)[exits] + np.cumsum(hm)[exits]


def between_scores(column: np.ndarray, t: float) -> float:
    """``t`` moved off the scores: the midpoint between the lowest score that passes (>= t) and the highest
    that fails, so every sample of ``column`` passes or fails exactly as at ``t``.

    The search picks thresholds from quantiles of the scores, i.e. often a sample's own score; a sample on
    its threshold flips when the runtime's score differs in the last bits (another numpy, another CPU's
    summation order). At the midpoint it takes a difference of half the gap between two distinct scores.
    With nothing failing, the threshold goes below the lowest score by half its gap to the next one.
    """
    passing = column >= t
    upper = float(column[passing].min())  # the search only picks thresholds some sample passes
    if not passing.all():
        lower = float(column[~passing].max())
        mid = lower + 0.5 * (upper - lower)
        return mid if lower < mid <= upper else upper  # one float step apart: the midpoint rounds onto lower
    distinct = np.unique(column)
    gap = float(distinct[1] - distinct[0]) if len(distinct) > 1 else 1e-6 * max(1.0, abs(upper))
    return upper - 0.5 * gap


def fit_thresholds(
    scores: np.ndarray,
    correct: np.ndarray,
    macs_to_exit: Sequence[int],
    head_macs: Sequence[int],
    target_accuracy: float,
    metric: str = "max_softmax",
    skip_disabled: bool = True,
) -> ThresholdFit:
    """Greedy coordinate descent over per-exit thresholds.

    ``scores`` (N, E) are max-softmax (exit when >= t) or normalized entropy (exit when <= t);
    ``correct`` (N, E) says whether each exit's prediction is right. Starts from "never exit early",
    then repeatedly applies the single threshold change that lowers mean MACs most while accuracy
    stays >= target. With ``skip_disabled`` the cost counts only heads whose threshold can pass (the
    policy skips the others), so enabling an exit pays for its head on every sample that reaches it.
    Each threshold found is then moved midway between scores (:func:`between_scores`): the calibration
    split exits exactly as searched, and a score a hair off at run time cannot flip a sample.
    """
    n, n_exits = scores.shape
    if n == 0:
        raise CalibrationError("no calibration samples; the bundle's calibration split is empty")
    s = scores if metric == "max_softmax" else -scores  # larger = more confident in both cases
    never = float(np.max(s)) + 1.0
    grids = [np.unique(np.quantile(s[:, e], np.linspace(0.0, 1.0, 201))) for e in range(n_exits - 1)]
    th = np.full(n_exits, never)
    th[-1] = -np.inf
    rows = np.arange(n)

    def evaluate(t: np.ndarray) -> Tuple[float, float]:
        ex = first_exit(s >= t)
        acc = float(correct[rows, ex].mean())
        enabled = t < never if skip_disabled else None
        return acc, float(threshold_cost(ex, macs_to_exit, head_macs, enabled).mean())

    acc, cost = evaluate(th)
    full_acc = float(correct[:, -1].mean())
    if acc < target_accuracy:
        raise CalibrationError(
            "the final exit reaches {:.2%} on the calibration split, below the target {:.2%}; lower the target".format(
                full_acc, target_accuracy
            )
        )
    improved = True
    while improved:
        improved = False
        best = (cost, -1, 0.0, acc)
        for e in range(n_exits - 1):
            for cand in grids[e]:
                if cand >= th[e]:
                    continue
                trial = th.copy()
                trial[e] = cand
                a, c = evaluate(trial)
                if a >= target_accuracy and c < best[0] - 1e-9:
                    best = (c, e, float(cand), a)
        if best[1] >= 0:
            cost, e, value, acc = best
            th[e] = value
            improved = True
    for e in range(n_exits - 1):
        if th[e] < never:
            th[e] = between_scores(s[:, e], th[e])
    acc_mid, cost_mid = evaluate(th)
    # Same pass/fail for every sample, so the same outcome; anything else is a bug, not data (one line, still).
    if not (acc_mid == acc and abs(cost_mid - cost) <= 1e-6 * max(1.0, cost)):
        raise CalibrationError("calibration moved a threshold between two scores and the outcome changed (accuracy "
                               "{} -> {}, cost {} -> {}): a bug; please report it with the bundle".format(acc, acc_mid, cost, cost_mid))
    ms = metric == "max_softmax"
    out: List[float] = []
    for e, v in enumerate(th):
        if e == n_exits - 1:
            out.append(0.0 if ms else 1.0)  # the final exit always accepts
        elif v >= never:
            out.append(2.0 if ms else -1.0)  # unreachable: this exit never fires
        else:
            out.append(float(v) if ms else float(-v))
    return ThresholdFit(
        metric=metric,
        thresholds=out,
        target_accuracy=float(target_accuracy),
        accuracy=acc,
        mean_macs=cost,
        full_accuracy=full_acc,
        full_macs=int(macs_to_exit[-1] + head_macs[-1]),
        n=n,
    )


@dataclass
class CalibrationData:
    """Everything calibrators need, computed once: every exit on every held-out sample."""

    table: "ExitTable"
    y: np.ndarray
    macs_to_exit: List[int]
    head_macs: List[int]
    full_accuracy: float

    @property
    def correct(self) -> np.ndarray:
        return self.table.pred == self.y[:, None]

    def subset(self, idx: np.ndarray) -> "CalibrationData":
        """The samples ``idx`` only (cross-fit folds)."""
        from edgeexit.runtime import ExitTable

        t = self.table
        sub = ExitTable(
            logits_q=t.logits_q[idx], logits=t.logits[idx], confidence=t.confidence[idx], max_softmax=t.max_softmax[idx],
            pred=t.pred[idx], conf_q=None if t.conf_q is None else t.conf_q[idx],
            block_outputs={b: [outs[i] for i in idx] for b, outs in t.block_outputs.items()},
        )
        y = self.y[idx]
        full = float((sub.pred[:, -1] == y).mean()) if len(y) else float("nan")
        return CalibrationData(sub, y, self.macs_to_exit, self.head_macs, full)


def collect(runtime: "Runtime", samples: "Samples", keep_block0: bool = False) -> CalibrationData:
    """Run every exit of ``runtime`` over held-out ``samples`` (labels required)."""
    from edgeexit.bundle.data import check_given_samples, quantize_inputs

    check_given_samples(samples, runtime.bundle.manifest.input, runtime.bundle.manifest.num_classes)
    y = samples.require_labels("calibration")
    xq = quantize_inputs(samples.x, runtime.bundle.manifest.input)
    table = runtime.exit_table(xq, keep_block0=keep_block0)
    return CalibrationData(
        table=table,
        y=y,
        macs_to_exit=list(runtime.macs_to_exit),
        head_macs=list(runtime.head_macs),
        full_accuracy=float((table.pred[:, -1] == y).mean()),
    )


def is_accuracy(v: Any) -> bool:
    """A real number from 0 to 1 (not a bool, not NaN): an accuracy target a library caller passes."""
    return isinstance(v, Real) and not isinstance(v, bool) and 0.0 <= v <= 1.0


def target_from(data: CalibrationData, max_drop_pp: float, target_accuracy: Optional[float] = None) -> float:
    """The accuracy to calibrate for: an absolute target, or the final exit's minus ``max_drop_pp``."""
    if target_accuracy is not None:
        if not is_accuracy(target_accuracy):
            raise CalibrationError("target_accuracy={!r} is not an accuracy; give a number from 0 to 1".format(target_accuracy))
        return float(target_accuracy)
    if isinstance(max_drop_pp, bool) or not isinstance(max_drop_pp, Real) or not 0.0 <= max_drop_pp <= 100.0:
        raise CalibrationError("max_drop_pp={!r} is not a drop in percentage points; give a number from 0 to 100".format(
            max_drop_pp))
    if max_drop_pp / 100.0 > data.full_accuracy + 5e-5:  # the 2-decimal limit the message names passes
        raise CalibrationError("--max-drop-pp {:g} is more than the final exit's accuracy on the calibration split "
                               "({:.2f}%), which leaves no accuracy target; give at most {:.2f}, or --target-accuracy 0 "
                               "to accept any".format(max_drop_pp, 100 * data.full_accuracy, 100 * data.full_accuracy))
    return max(data.full_accuracy - max_drop_pp / 100.0, 0.0)


def threshold_scores(data: CalibrationData, metric: str = "max_softmax") -> np.ndarray:
    """(N, E) scores the threshold policy compares, computed as its runtime computes them: the table's
    max-softmax comes from HeadView itself, entropy from the same per-head function HeadView.entropy uses."""
    if metric == "max_softmax":
        return data.table.max_softmax
    if metric == "entropy":
        return normalized_entropy(data.table.logits)
    raise CalibrationError("unknown confidence metric '{}'; use max_softmax or entropy".format(metric))


def calibrate_threshold(data: CalibrationData, target: float, metric: str = "max_softmax", cross_fit: int = 0,
                        seed: int = 0) -> ThresholdFit:
    """Thresholds for ``target`` fitted on the whole calibration split.

    With ``cross_fit`` = k > 1, also estimates how they hold on unseen data: for each of k seeded folds the
    thresholds are fitted again on the other folds, for the same drop from their final exit
    (:func:`fold_target`), and applied to that fold with the policy's rules; the pooled out-of-fold
    accuracy and mean MACs go into ``out_of_fold_*``. Every sample's final exit is the same in or out of
    fold, so ``full_accuracy - out_of_fold_accuracy`` is the drop to expect on new data.
    """
    scores = threshold_scores(data, metric)
    fitted = fit_thresholds(scores, data.correct, data.macs_to_exit, data.head_macs, target, metric)
    if cross_fit > 1:
        fitted.out_of_fold_accuracy, fitted.out_of_fold_mean_macs = _cross_fit_threshold(data, scores, target, metric,
                                                                                         cross_fit, seed)
        fitted.out_of_fold_k = cross_fit
    return fitted


def _cross_fit_threshold(data: CalibrationData, scores: np.ndarray, target: float, metric: str, k: int,
                         seed: int) -> Tuple[float, float]:
    n = len(data.y)
    if n < k:
        raise CalibrationError("the calibration split has {} samples; calibrate needs at least {}".format(n, k))
    correct = data.correct
    ms = metric == "max_softmax"
    hits, macs = 0, 0.0
    everyone = np.arange(n)
    for held in folds(n, k, seed):
        train = np.setdiff1d(everyone, held)
        goal = fold_target(target, data.full_accuracy, correct[train, -1])
        th = fit_thresholds(scores[train], correct[train], data.macs_to_exit, data.head_macs, goal, metric).thresholds
        t = np.asarray(th)
        # The policy's own rules (ThresholdPolicy.decide and may_evaluate).
        passes = scores[held] >= t if ms else scores[held] <= t
        enabled = t <= 1.0 if ms else t >= 0.0
        ex = first_exit(passes)
        hits += int(correct[held, ex].sum())
        macs += float(threshold_cost(ex, data.macs_to_exit, data.head_macs, enabled).sum())
    return hits / n, macs / n


def normalized_entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy of softmax(logits) over the last axis, divided by log(C): 0 = certain, 1 = uniform.

    Computed head by head with the very function HeadView.entropy() runs (a vectorized form differs in the
    last bits, enough to flip a sample that sits on its threshold); ``logits`` are the float32 dequantized
    logits of an ExitTable, equal bit for bit to HeadView.logits().
    """
    flat = logits.reshape(-1, logits.shape[-1])
    out = np.array([normalized_entropy_of(softmax_of(row)) for row in flat], dtype=np.float64)
    return out.reshape(logits.shape[:-1])
