"""EENet's learned early-exit scheduler (Ilhan et al., WACV 2024; git-disl/EENet), numpy only.

Per exit k a score model predicts the probability that exit k is correct from the exit's confidence
features -- max probability, the normalized-entropy confidence 1 + sum p log p / log C, the top-1
margin -- and the previous exit's score (EENet's ScoreNormalizer inputs). Thresholds T_k on the scores
are then fitted so the average cost meets a budget (MACs, or ms through a latency table) while
accuracy is maximized; inference exits at the first k with score_k >= T_k (the last exit always).

Simplification, stated: EENet learns an assignment network whose mean exit probabilities give the
thresholds; here the thresholds on the learned scores are searched directly: the least-cost thresholds
for an accuracy target, or the most accurate ones whose mean cost meets a budget (bisection).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from edgeexit.calibration import ThresholdFit, fit_thresholds, normalized_entropy, threshold_cost
from edgeexit.errors import CalibrationError
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState

N_FEATURES = 4


def exit_features(probs_max: float, entropy_conf: float, margin: float, prev_score: float) -> List[float]:
    return [probs_max, entropy_conf, margin, prev_score]


def table_features(logits: np.ndarray) -> np.ndarray:
    """(N, E, 3): max prob, entropy confidence, margin from dequantized logits (N, E, C)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    s = np.sort(p, axis=-1)
    return np.stack([s[..., -1], 1.0 - normalized_entropy(logits), s[..., -1] - s[..., -2]], axis=-1)


def fit_scores(feats: np.ndarray, correct: np.ndarray, seed: int = 0, steps: int = 400, lr: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Logistic regression per exit, fitted in exit order (each uses the previous exit's score)."""
    n, n_exits, _ = feats.shape
    weights = np.zeros((n_exits, N_FEATURES + 1))
    scores = np.zeros((n, n_exits))
    prev = np.zeros(n)
    for k in range(n_exits):
        x = np.concatenate([feats[:, k, :], prev[:, None], np.ones((n, 1))], axis=1)
        y = correct[:, k].astype(np.float64)
        w = np.random.RandomState(seed + k).normal(0, 0.01, N_FEATURES + 1)
        for _ in range(steps):
            pr = 1.0 / (1.0 + np.exp(-(x @ w)))
            w -= lr * (x.T @ (pr - y) / n + 1e-4 * w)
        weights[k] = w
        prev = 1.0 / (1.0 + np.exp(-(x @ w)))
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


class EENetPolicy(ExitPolicy):
    name = "eenet"

    def __init__(self, weights: List[List[float]], thresholds: List[float]) -> None:
        self.weights = [list(map(float, w)) for w in weights]
        self.thresholds = [float(t) for t in thresholds]
        self._prev = 0.0

    @classmethod
    def from_calibration(cls, calibration: Dict[str, Any], n_exits: int) -> "EENetPolicy":
        entry = calibration.get("eenet")
        if not entry or len(entry.get("thresholds", [])) != n_exits or len(entry.get("weights", [])) != n_exits:
            raise CalibrationError("the bundle has no eenet calibration; run `edgeexit calibrate --model PATH`")
        return cls(entry["weights"], entry["thresholds"])

    def start(self, state: SampleState) -> None:
        self._prev = 0.0

    def score(self, head: HeadView) -> float:
        p = head.probs()
        s = np.sort(p)
        ent = float(-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(len(p)))
        f = exit_features(float(s[-1]), 1.0 - ent, float(s[-1] - s[-2]), self._prev)
        w = self.weights[head.exit_index]
        z = sum(a * b for a, b in zip(f, w)) + w[-1]
        return 1.0 / (1.0 + math.exp(-z))

    def decide(self, head: HeadView, state: SampleState) -> bool:
        sc = self.score(head)
        self._prev = sc
        return sc >= self.thresholds[head.exit_index]

    def describe(self) -> dict:
        return {"policy": self.name, "thresholds": self.thresholds}
