"""An EENet-style learned early-exit scheduler (after Ilhan et al., WACV 2024; git-disl/EENet), numpy only.

What is implemented: per exit k, a logistic regression predicts the probability that exit k is right
from four numbers -- the exit's max probability, its normalized-entropy confidence
1 + sum p log p / log C, its top-1 minus top-2 probability margin, and exit k-1's score (0 at the
first exit). Thresholds T_k on those scores are searched directly, with the threshold policy's
coordinate descent: the least-cost thresholds for an accuracy target, or the most accurate ones whose
mean cost (MACs, or ms through a latency table) meets a budget (bisection over the target).
Inference runs every head in order from a start exit s and exits at the first k >= s with
score_k >= T_k (the last exit always). Heads before s never run: calibration tries every start and keeps
the cheapest that meets the target (a weak, costly first head is dropped the way the threshold policy
disables an exit that cannot pay), and the chain's first score then reads a previous score of 0.

How EENet differs: its scorer (a ScoreNormalizer per exit) reads exit k's full probability vector,
its max probability and entropy confidence, and the scores of *all* earlier exits; a separate
assignment network, trained jointly with it against the budget, gives each exit's share of samples,
from which the thresholds follow. The margin feature, the single previous score, the per-exit logistic
regression and the direct threshold search are this module's simplifications.

Calibration computes every feature and score with the functions :meth:`EENetPolicy.score` runs, so the
thresholds are fitted on exactly the scores the runtime compares.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeexit.calibration import ThresholdFit, first_exit, fit_thresholds, fold_target, folds, threshold_cost
from edgeexit.errors import CalibrationError
from edgeexit.jsonvalues import is_finite_number, is_integer, is_number
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState, normalized_entropy_of, softmax_of

N_FEATURES = 4


def exit_features(probs_max: float, entropy_conf: float, margin: float, prev_score: float) -> List[float]:
    return [probs_max, entropy_conf, margin, prev_score]


def logit_features(z: np.ndarray) -> List[float]:
    """[max prob, entropy confidence, margin] of one head's dequantized logits (C,), as the runtime reads them."""
    p = softmax_of(z)
    s = np.sort(p)
    return [float(s[-1]), 1.0 - normalized_entropy_of(p), float(s[-1] - s[-2])]


def table_features(logits: np.ndarray) -> np.ndarray:
    """(N, E, 3): :func:`logit_features` of every head of an exit table's dequantized logits (N, E, C)."""
    flat = logits.reshape(-1, logits.shape[-1])
    return np.array([logit_features(row) for row in flat], dtype=np.float64).reshape(logits.shape[:-1] + (3,))


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z) without math.exp's OverflowError: past z = -700 e^-z overflows a float, and the
    equivalent e^z / (1 + e^z) is e^z to double precision."""
    if z < -700.0:
        return math.exp(z)
    return 1.0 / (1.0 + math.exp(-z))


def exit_score(feats: Sequence[float], prev_score: float, w: Sequence[float]) -> float:
    """Exit's predicted probability of being right: ``feats`` from :func:`logit_features`, ``w`` its
    N_FEATURES weights and then the bias. The one scoring function of calibration and runtime."""
    f = exit_features(feats[0], feats[1], feats[2], prev_score)
    z = sum(a * b for a, b in zip(f, w)) + w[-1]
    return sigmoid(z)


def score_table(feats: np.ndarray, weights: Sequence[Sequence[float]]) -> np.ndarray:
    """(N, E) scores of every exit, chained exit by exit exactly as the runtime chains them."""
    n, n_exits, _ = feats.shape
    w = [[float(v) for v in row] for row in weights]
    out = np.zeros((n, n_exits))
    for i in range(n):
        prev = 0.0
        for k in range(n_exits):
            prev = exit_score(feats[i, k].tolist(), prev, w[k])
            out[i, k] = prev
    return out


def fit_scores(feats: np.ndarray, correct: np.ndarray, seed: int = 0, steps: int = 400, lr: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Logistic regression per exit, fitted in exit order (each uses the previous exit's score, computed
    as the runtime computes it). Returns the weights and the (N, E) scores."""
    n, n_exits, _ = feats.shape
    weights = np.zeros((n_exits, N_FEATURES + 1))
    scores = np.zeros((n, n_exits))
    prev = np.zeros(n)
    for k in range(n_exits):
        x = np.concatenate([feats[:, k, :], prev[:, None], np.ones((n, 1))], axis=1)
        y = correct[:, k].astype(np.float64)
        w = np.random.RandomState((seed + k) % 2**32).normal(0, 0.01, N_FEATURES + 1)  # any --seed in range
        for _ in range(steps):
            pr = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -700.0, 700.0)))
            w -= lr * (x.T @ (pr - y) / n + 1e-4 * w)
        weights[k] = w
        wk = w.tolist()
        prev = np.array([exit_score(feats[i, k].tolist(), float(prev[i]), wk) for i in range(n)])
        scores[:, k] = prev
    return weights, scores


def fit_for_budget(
    scores: np.ndarray, correct: np.ndarray, macs_to_exit: Sequence[float], head_macs: Sequence[float], budget: float,
    unit: str = "MACs",
) -> ThresholdFit:
    """The most accurate thresholds whose mean cost stays within ``budget``: bisection over the accuracy
    target of :func:`fit_thresholds` (least cost for a given accuracy). Costs and budget share one
    unit: MACs, or ms when the cost arrays come from a latency table (``mean_macs`` then holds ms)."""
    cheapest = threshold_cost(np.zeros(1, dtype=np.int64), macs_to_exit, head_macs)[0]
    if budget < cheapest:
        raise CalibrationError(
            "a budget of {:.4g} {} is below the cost of exiting everything at the first exit ({:.4g} {}); raise the budget".format(
                budget, unit, cheapest, unit))
    lo, hi = float(correct[:, 0].mean()) - 1e-9, float(correct[:, -1].mean())
    best = fit_thresholds(scores, correct, macs_to_exit, head_macs, lo, skip_disabled=False)
    for _ in range(16):
        mid = 0.5 * (lo + hi)
        try:
            f = fit_thresholds(scores, correct, macs_to_exit, head_macs, mid, skip_disabled=False)
        except CalibrationError:
            hi = mid
            continue
        if f.mean_macs <= budget:
            best, lo = f, mid
        else:
            hi = mid
    return best


def cross_fit(feats: np.ndarray, correct: np.ndarray, macs_to_exit: Sequence[float], head_macs: Sequence[float],
              target: float, k: int, seed: int = 0) -> Tuple[float, float]:
    """Out-of-fold accuracy and mean MACs for an accuracy ``target``: per seeded fold, score models and
    thresholds fitted on the other folds (for the same drop from their final exit, see
    :func:`~edgeexit.calibration.fold_target`), applied to that fold (every head runs: the scores chain)."""
    full = float(correct[:, -1].mean())

    def fit(scores: np.ndarray, train_correct: np.ndarray) -> List[float]:
        goal = fold_target(target, full, train_correct[:, -1])
        return fit_thresholds(scores, train_correct, macs_to_exit, head_macs, goal, skip_disabled=False).thresholds

    return exit_figures(out_of_fold_exits(feats, correct, k, seed, fit), correct, macs_to_exit, head_macs)


def exit_figures(exits: np.ndarray, correct: np.ndarray, macs_to_exit: Sequence[float],
                 head_macs: Sequence[float]) -> Tuple[float, float]:
    """Accuracy and mean cost of the samples leaving at ``exits`` (every head up to the exit runs)."""
    return (float(correct[np.arange(len(exits)), exits].mean()),
            float(threshold_cost(exits, macs_to_exit, head_macs).mean()))


def out_of_fold_exits(feats: np.ndarray, correct: np.ndarray, k: int, seed: int,
                      fit: Callable[[np.ndarray, np.ndarray], List[float]]) -> np.ndarray:
    """Each sample's exit under score models and thresholds (``fit(scores, correct)``) fitted on the other
    k-1 seeded folds."""
    n = feats.shape[0]
    if n < k:
        raise CalibrationError("the calibration split has {} samples; calibrate needs at least {}".format(n, k))
    exits = np.zeros(n, dtype=np.int64)
    everyone = np.arange(n)
    for held in folds(n, k, seed):
        train = np.setdiff1d(everyone, held)
        w, s = fit_scores(feats[train], correct[train], seed=seed)
        exits[held] = first_exit(score_table(feats[held], w) >= np.asarray(fit(s, correct[train])))
    return exits


def _weights_problem(weights: Any, n_exits: int) -> Optional[str]:
    """What makes ``weights`` unusable for ``n_exits`` exits, or None: a row per exit of N_FEATURES weights
    and a bias, every one a finite number."""
    n_cols = N_FEATURES + 1
    if not isinstance(weights, list) or len(weights) != n_exits:
        return "are not a list of {} rows, one per exit".format(n_exits)
    for e, row in enumerate(weights):
        if not isinstance(row, list) or len(row) != n_cols:
            return "row {} is not {} numbers ({} feature weights and a bias)".format(e, n_cols, N_FEATURES)
        if not all(is_finite_number(v) for v in row):
            return "row {} holds a value that is not a finite number".format(e)
    return None


def widen(weights: np.ndarray, thresholds: Sequence[float], start: int) -> Tuple[List[List[float]], List[float]]:
    """Full-length weights and thresholds (one per exit) for a chain fitted on exits ``start``.. only:
    the exits before it get zero weights and the unreachable threshold 2.0 (scores are <= 1); the policy
    never evaluates their heads anyway."""
    n_cols = weights.shape[1]
    return ([[0.0] * n_cols for _ in range(start)] + weights.tolist(), [2.0] * start + [float(t) for t in thresholds])


def start_exit_of(entry: Dict[str, Any], n_exits: int) -> int:
    """The validated ``start_exit`` of a calibration.json eenet entry; 0 where absent (files written before
    the start was searched ran the whole chain)."""
    start = entry.get("start_exit", 0)
    if not is_integer(start) or not 0 <= start < n_exits:  # a float index would fail later, at the first sample
        raise CalibrationError("calibration.json: eenet start_exit must be an exit index from 0 to {}, not {!r}; run `edgeexit "
                               "calibrate` again".format(n_exits - 1, start))
    return start


class EENetPolicy(ExitPolicy):
    name = "eenet"

    def __init__(self, weights: List[List[float]], thresholds: List[float], start_exit: int = 0) -> None:
        self.weights = [list(map(float, w)) for w in weights]
        self.thresholds = [float(t) for t in thresholds]
        #: the first exit of the chain: earlier heads never run, and this exit's previous score is 0 (as fitted)
        self.start_exit = int(start_exit)
        self._prev = 0.0

    @classmethod
    def from_calibration(cls, calibration: Dict[str, Any], n_exits: int) -> "EENetPolicy":
        entry = calibration.get("eenet")
        if not entry:
            raise CalibrationError("the bundle has no eenet calibration; run `edgeexit calibrate --model PATH`")
        th = entry.get("thresholds")
        if not isinstance(th, list) or len(th) != n_exits or not all(is_number(t) for t in th):
            # (make_policy refuses NaN and infinite thresholds for every policy)
            raise CalibrationError("calibration.json: eenet thresholds must list {} numbers, one per exit; run `edgeexit "
                                   "calibrate` again".format(n_exits))
        # An empty row fails with an IndexError at the first sample, a NaN weight exits nowhere: refuse them here.
        why = _weights_problem(entry.get("weights"), n_exits)
        if why:
            raise CalibrationError("calibration.json: eenet weights {}; run `edgeexit calibrate` again".format(why))
        return cls(entry["weights"], th, start_exit_of(entry, n_exits))

    def start(self, state: SampleState) -> None:
        self._prev = 0.0

    def may_evaluate(self, exit_index: int) -> bool:
        return exit_index >= self.start_exit

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        # Skipping the heads before the start keeps _prev at 0 for the start exit, the value its score was fitted with.
        return exit_index >= self.start_exit

    def score(self, head: HeadView) -> float:
        return exit_score(logit_features(head.logits()), self._prev, self.weights[head.exit_index])

    def decide(self, head: HeadView, state: SampleState) -> bool:
        sc = self.score(head)
        self._prev = sc
        return sc >= self.thresholds[head.exit_index]

    def describe(self) -> dict:
        return {"policy": self.name, "thresholds": self.thresholds, "start_exit": self.start_exit}
