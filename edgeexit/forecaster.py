"""The exit forecaster: a tiny MLP (numpy only) that predicts, from cheap features of the exit just
evaluated, the exit at which a sample will be confident enough to stop.

Features at exit e: the head's max-softmax, top-1 minus top-2 probability, the position e / (E - 1),
and (optionally) the channel means of the first exit's block output. Output: a distribution over
exits, masked to exits after e. Trained (seeded, full-batch Adam, cross-entropy) by
``edgeexit calibrate`` on the bundle's held-out calibration split; stored in calibration.json.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgeexit.errors import CalibrationError
from edgeexit.policies.base import HeadView

def head_features(head: HeadView, n_exits: int) -> List[float]:
    """[max-softmax, top1 - top2 probability, exit position in [0, 1]] from the int8 codes."""
    codes = head.codes
    p1 = head.max_softmax()
    q = sorted(codes)
    tab = head.decoder.exp_table
    p2 = tab[q[-1] - q[-2]] * p1  # exp((q2 - q1) * scale) / sum
    return [p1, p1 - p2, head.exit_index / max(1, n_exits - 1)]


def pooled_features(block_output: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Channel means of an int8 NHWC block output, dequantized."""
    flat = block_output.reshape(-1, block_output.shape[-1]).astype(np.float32)
    # A matrix-vector product is ~5x faster than .mean(axis=0) on int8 here (it sits on the hot path).
    weights = np.full(flat.shape[0], scale / flat.shape[0], dtype=np.float32)
    return weights @ flat - np.float32(zero_point * scale)


@dataclass
class Forecaster:
    """A one-hidden-layer MLP over standardized features; callers mask the exits at or before the
    current one (they cannot be forecast)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n_exits: int
    use_block_features: bool
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def n_params(self) -> int:
        return int(self.w1.size + self.b1.size + self.w2.size + self.b2.size)

    def folded(self) -> "tuple":
        """(W1, b1, W2, b2) with the standardization folded into the first layer (computed once)."""
        f = self.__dict__.get("_folded")
        if f is None:
            w1 = self.w1 / self.std[:, None]
            b1 = self.b1 - (self.mean / self.std) @ self.w1
            f = self.__dict__["_folded"] = (w1, b1, self.w2, self.b2)
        return f

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Exit logits for one feature vector (or a batch, one per row)."""
        w1, b1, w2, b2 = self.folded()
        return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2

    def to_dict(self) -> Dict[str, Any]:
        return {
            "w1": self.w1.tolist(), "b1": self.b1.tolist(), "w2": self.w2.tolist(), "b2": self.b2.tolist(),
            "mean": self.mean.tolist(), "std": self.std.tolist(), "n_exits": self.n_exits,
            "use_block_features": self.use_block_features, "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Forecaster":
        try:
            f = cls(
                w1=np.asarray(d["w1"], np.float64), b1=np.asarray(d["b1"], np.float64),
                w2=np.asarray(d["w2"], np.float64), b2=np.asarray(d["b2"], np.float64),
                mean=np.asarray(d["mean"], np.float64), std=np.asarray(d["std"], np.float64),
                n_exits=int(d["n_exits"]), use_block_features=bool(d["use_block_features"]), meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationError("calibration.json: the forecaster entry is malformed ({}); run `edgeexit calibrate` again".format(err)) from None
        if f.w1.shape[0] != f.mean.shape[0] or f.w2.shape[1] != f.n_exits:
            raise CalibrationError("calibration.json: forecaster weights have inconsistent shapes; run `edgeexit calibrate` again")
        return f


def training_pairs(
    head_feats: np.ndarray, block_feats: Optional[np.ndarray], targets: np.ndarray, n_exits: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, current exit, target exit) for every state where the policy must forecast:
    at the first exit, and at every later exit it could stop at before the sample's true exit
    (re-prediction after an under-prediction).

    ``head_feats`` is (N, E, 3): head_features of every exit for every sample.
    """
    xs, cur, tgt = [], [], []
    for i in range(targets.shape[0]):
        for e in range(0, int(targets[i])):
            f = list(head_feats[i, e])
            if block_feats is not None:
                f += list(block_feats[i])
            xs.append(f)
            cur.append(e)
            tgt.append(int(targets[i]))
    if not xs:
        raise CalibrationError("every calibration sample exits at the first exit: there is nothing to forecast")
    return np.asarray(xs, np.float64), np.asarray(cur, np.int64), np.asarray(tgt, np.int64)


def fit(
    x: np.ndarray, cur: np.ndarray, tgt: np.ndarray, n_exits: int, use_block_features: bool,
    hidden: int = 16, epochs: int = 600, lr: float = 0.01, l2: float = 1e-4, seed: int = 0,
) -> Forecaster:
    """Full-batch Adam on masked softmax cross-entropy. Deterministic for a given seed."""
    rng = np.random.RandomState(seed)
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-6
    xs = (x - mean) / std
    d = xs.shape[1]
    params = [
        rng.normal(0, np.sqrt(2.0 / d), (d, hidden)), np.zeros(hidden),
        rng.normal(0, np.sqrt(1.0 / hidden), (hidden, n_exits)), np.zeros(n_exits),
    ]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    mask = np.arange(n_exits)[None, :] <= cur[:, None]
    onehot = np.eye(n_exits)[tgt]
    n = xs.shape[0]
    loss = float("nan")
    for step in range(1, epochs + 1):
        w1, b1, w2, b2 = params
        hpre = xs @ w1 + b1
        h = np.maximum(hpre, 0.0)
        z = h @ w2 + b2
        z = np.where(mask, -1e9, z)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = float(-np.log(np.maximum((p * onehot).sum(axis=1), 1e-12)).mean())
        dz = (p - onehot) / n
        grads = [None, None, h.T @ dz + l2 * w2, dz.sum(axis=0)]
        dh = (dz @ w2.T) * (hpre > 0)
        grads[0] = xs.T @ dh + l2 * w1
        grads[1] = dh.sum(axis=0)
        for j, g in enumerate(grads):
            m[j] = 0.9 * m[j] + 0.1 * g
            v[j] = 0.999 * v[j] + 0.001 * g * g
            mhat = m[j] / (1 - 0.9 ** step)
            vhat = v[j] / (1 - 0.999 ** step)
            params[j] = params[j] - lr * mhat / (np.sqrt(vhat) + 1e-8)
    w1, b1, w2, b2 = params
    return Forecaster(
        w1=w1, b1=b1, w2=w2, b2=b2, mean=mean, std=std, n_exits=n_exits, use_block_features=use_block_features,
        meta={"hidden": hidden, "epochs": epochs, "lr": lr, "l2": l2, "seed": seed, "train_loss": loss, "n_pairs": int(n)},
    )


LUT_BINS = 32


@dataclass
class ForecastTable:
    """The forecaster distilled into a lookup table over (current exit, max-softmax bin), as EdgeBERT
    distills its entropy predictor: at inference a forecast is one list index, not a forward pass.

    Each cell holds the forecast (most likely exit) and the exit to evaluate next (expected-cost
    choice), both from the MLP's distribution averaged over the calibration states that fall in the
    cell; empty cells copy their nearest filled neighbour at the same exit.
    """

    bins: int
    planned: List[List[int]]
    jump: List[List[int]]

    def lookup(self, exit_index: int, max_softmax: float) -> Tuple[int, int]:
        b = int(max_softmax * self.bins)
        if b >= self.bins:
            b = self.bins - 1
        return self.planned[exit_index][b], self.jump[exit_index][b]

    def to_dict(self) -> Dict[str, Any]:
        return {"bins": self.bins, "planned": self.planned, "jump": self.jump}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ForecastTable":
        try:
            t = cls(int(d["bins"]), [[int(v) for v in row] for row in d["planned"]], [[int(v) for v in row] for row in d["jump"]])
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationError("calibration.json: the forecast table is malformed ({}); run `edgeexit calibrate` again".format(err)) from None
        if any(len(row) != t.bins for row in t.planned + t.jump):
            raise CalibrationError("calibration.json: forecast table rows must have {} bins; run `edgeexit calibrate` again".format(t.bins))
        return t


def distill(fc: Forecaster, x: np.ndarray, cur: np.ndarray, cost: np.ndarray, bins: int = LUT_BINS) -> ForecastTable:
    """Tabulate ``fc`` over the states ``x`` (features, first column the max-softmax) at exits ``cur``."""
    n_exits = fc.n_exits
    z = fc.logits(x)
    z = np.where(np.arange(n_exits)[None, :] <= cur[:, None], -np.inf, z)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    cell = np.minimum((x[:, 0] * bins).astype(int), bins - 1)
    planned: List[List[int]] = []
    jump: List[List[int]] = []
    for e in range(n_exits):
        row_p: List[Optional[int]] = [None] * bins
        row_j: List[Optional[int]] = [None] * bins
        for b in range(bins):
            sel = (cur == e) & (cell == b)
            if e < n_exits - 1 and sel.any():
                q = p[sel].mean(axis=0)
                q[e + 1 :] = np.maximum(q[e + 1 :], np.exp(-20.0) * q.max())  # every later exit stays possible, as live
                row_p[b] = int(np.argmax(q))
                row_j[b] = e + 1 + int(np.argmin(cost[e + 1 :, e + 1 :] @ q[e + 1 :]))
        filled = [b for b in range(bins) if row_p[b] is not None]
        nxt = min(e + 1, n_exits - 1)
        planned.append([row_p[min(filled, key=lambda f: abs(f - b))] if filled else nxt for b in range(bins)])  # type: ignore
        jump.append([row_j[min(filled, key=lambda f: abs(f - b))] if filled else nxt for b in range(bins)])  # type: ignore
    return ForecastTable(bins, planned, jump)
