"""Fitting exit thresholds on held-out data for an accuracy target, at the least mean MACs."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np

from edgeexit.errors import CalibrationError

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

    def to_dict(self) -> dict:
        return asdict(self)


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


def collect(runtime: "Runtime", samples: "Samples", keep_block0: bool = False) -> CalibrationData:
    """Run every exit of ``runtime`` over held-out ``samples`` (labels required)."""
    from edgeexit.bundle.data import quantize_inputs

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


def target_from(data: CalibrationData, max_drop_pp: float, target_accuracy: Optional[float] = None) -> float:
    """The accuracy to calibrate for: an absolute target, or the final exit's minus ``max_drop_pp``."""
    if target_accuracy is not None:
        return float(target_accuracy)
    return data.full_accuracy - max_drop_pp / 100.0


def calibrate_threshold(data: CalibrationData, target: float, metric: str = "max_softmax") -> ThresholdFit:
    scores = data.table.max_softmax if metric == "max_softmax" else normalized_entropy(data.table.logits)
    return fit_thresholds(scores, data.correct, data.macs_to_exit, data.head_macs, target, metric)


def normalized_entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy of softmax(logits) over the last axis, divided by log(C): 0 = certain, 1 = uniform."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)
    return h / np.log(logits.shape[-1])
