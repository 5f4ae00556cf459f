"""Simulate the classic threshold policy on int8-chain logits (a check, not the runtime policy).

Per exit, the lowest max-softmax threshold whose exited calibration samples are at least as
accurate as the final exit on the whole calibration split; then every head is evaluated in order
and a sample leaves at the first exit whose max-softmax reaches its threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools.export import softmax


@dataclass
class ThresholdResult:
    thresholds: list[float]
    accuracy: float
    full_accuracy: float
    mean_macs: float
    full_macs: float

    @property
    def macs_reduction(self) -> float:
        return 1.0 - self.mean_macs / self.full_macs


def calibrate_thresholds(logits: list[np.ndarray], y: np.ndarray, margin: float = 0.0) -> list[float]:
    target = float((logits[-1].argmax(1) == y).mean()) + margin
    ths = []
    for lg in logits[:-1]:
        p = softmax(lg).max(1)
        ok = lg.argmax(1) == y
        best = 1.01  # never exit
        for t in np.unique(np.concatenate([p, [1.0]]))[::-1]:
            m = p >= t
            if m.sum() and ok[m].mean() >= target:
                best = float(t)
            elif m.sum() >= 20:
                break
        ths.append(best)
    return ths + [0.0]


def simulate(logits: list[np.ndarray], y: np.ndarray, thresholds: list[float],
             block_macs: list[int], exit_macs: list[int], after_block: list[int]) -> ThresholdResult:
    probs = [softmax(lg) for lg in logits]
    cum_blocks = np.cumsum(block_macs)
    correct = 0
    macs = 0.0
    for i in range(len(y)):
        for e, p in enumerate(probs):
            if p[i].max() >= thresholds[e] or e == len(probs) - 1:
                correct += int(p[i].argmax() == y[i])
                macs += cum_blocks[after_block[e]] + sum(exit_macs[: e + 1])
                break
    full = float(cum_blocks[-1] + exit_macs[-1])
    return ThresholdResult(thresholds, correct / len(y), float((logits[-1].argmax(1) == y).mean()),
                           macs / len(y), full)
