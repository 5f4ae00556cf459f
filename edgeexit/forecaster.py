"""The exit forecaster: a tiny MLP (numpy only) that predicts, from cheap features of the exit just
evaluated, the exit at which a sample will be confident enough to stop.

Features at exit e: the head's max-softmax, top-1 minus top-2 probability, the position e / (E - 1),
and (optionally) the channel means of the first exit's block output (on a block wider than
MAX_POOLED_FEATURES channels, the means of that many groups of adjacent channels, so the MLPs stay at a
few thousand parameters). Output: a distribution over
exits, masked to exits after e. Trained (seeded, full-batch Adam, cross-entropy) by
``edgeexit calibrate`` on the bundle's held-out calibration split; stored in calibration.json.
The entry forecaster is the same MLP on the channel means alone, before any head runs.

What runs at inference is distilled from the MLPs: the head forecaster into a lookup table over
(exit, max-softmax bin) (:class:`ForecastTable`), the entry forecaster into a depth-4 tree over the
channel sums (:class:`EntryTree`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgeexit.errors import CalibrationError
from edgeexit.jsonvalues import holds_bool, is_number, whole_number
from edgeexit.policies.base import HeadView

HEAD_FEATURES = 3  # what head_features() returns per head
# Pooled features at most: 64 keep both MLPs near 2.4k parameters (hidden 16, 8 exits); 256 channels
# one feature each made them 8.5k, past the design card's "a few thousand at most".
MAX_POOLED_FEATURES = 64


def pooled_width(channels: int) -> int:
    """How many pooled features a block output with ``channels`` channels gives."""
    return min(channels, MAX_POOLED_FEATURES)


@lru_cache(maxsize=8)
def channel_groups(channels: int) -> Optional[np.ndarray]:
    """The (channels, groups) 0/1 matrix putting each channel in one of MAX_POOLED_FEATURES groups of
    adjacent channels (sizes differ by at most one), or None where each channel is its own feature."""
    if channels <= MAX_POOLED_FEATURES:
        return None
    m = np.zeros((channels, MAX_POOLED_FEATURES), dtype=np.float32)
    m[np.arange(channels), np.arange(channels) * MAX_POOLED_FEATURES // channels] = 1.0
    m.setflags(write=False)  # cached and shared
    return m


@lru_cache(maxsize=8)
def group_means(channels: int) -> Optional[np.ndarray]:
    """:func:`channel_groups` scaled so that channel means times it are group means (each column sums to 1),
    or None where each channel is its own feature. Cached: pooling a wide block runs on the hot path."""
    groups = channel_groups(channels)
    if groups is None:
        return None
    m = groups / groups.sum(axis=0)
    m.setflags(write=False)
    return m


def head_features(head: HeadView, n_exits: int) -> List[float]:
    """[max-softmax, top1 - top2 probability, exit position in [0, 1]] from the int8 codes."""
    codes = head.codes
    p1 = head.max_softmax()
    q = sorted(codes)
    tab = head.decoder.exp_table
    p2 = tab[q[-1] - q[-2]] * p1  # exp((q2 - q1) * scale) / sum
    return [p1, p1 - p2, head.exit_index / max(1, n_exits - 1)]


def pooled_features(block_output: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Channel means of an int8 NHWC block output, dequantized (group means on a wide block:
    :func:`channel_groups`)."""
    flat = block_output.reshape(-1, block_output.shape[-1]).astype(np.float32)
    # A matrix-vector product is ~5x faster than .mean(axis=0) on int8 here (it sits on the hot path).
    weights = np.full(flat.shape[0], scale / flat.shape[0], dtype=np.float32)
    means = weights @ flat - np.float32(zero_point * scale)
    to_groups = group_means(flat.shape[1])
    return means if to_groups is None else means @ to_groups


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
        except (KeyError, TypeError, ValueError, OverflowError) as err:  # OverflowError: 10**400 as a float
            raise CalibrationError("calibration.json: the forecaster entry is malformed ({}); run `edgeexit calibrate` again".format(err)) from None
        why = f._problem(d)
        if why:
            raise CalibrationError("calibration.json: the forecaster {}; run `edgeexit calibrate` again".format(why))
        return f

    def _problem(self, d: Dict[str, Any]) -> Optional[str]:
        """What makes these weights unusable (wrong shapes, non-finite values), or None.

        A NaN or infinite weight makes every logit NaN, and argmax/argmin of NaNs silently pick exit 0;
        a zero standard deviation divides by zero when the standardization is folded in."""
        if any(holds_bool(d.get(k)) for k in ("w1", "b1", "w2", "b2", "mean", "std")):
            return "has true or false among its weights"
        if not isinstance(d.get("use_block_features"), bool) or isinstance(d.get("n_exits"), bool):
            return "entry has a non-boolean use_block_features or a non-integer n_exits"
        if self.n_exits < 1 or self.n_exits != d["n_exits"]:
            return "has n_exits {!r}, not a positive whole number".format(d["n_exits"])
        if self.w1.ndim != 2 or self.w2.ndim != 2 or self.w1.shape[0] < 1 or self.w1.shape[1] < 1:
            return "weights w1 and w2 are not non-empty matrices"
        n_in, hidden = self.w1.shape
        expected = {"b1": (hidden,), "w2": (hidden, self.n_exits), "b2": (self.n_exits,), "mean": (n_in,), "std": (n_in,)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                return "weights have inconsistent shapes ({} is {}, not {})".format(
                    name, getattr(self, name).shape, shape)
        for name in ("w1", "b1", "w2", "b2", "mean", "std"):
            if not np.all(np.isfinite(getattr(self, name))):
                return "has non-finite values (NaN or infinity) in {}".format(name)
        if not np.all(self.std > 0):
            return "has a standard deviation that is not positive"
        return None


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
        raise CalibrationError("at this accuracy target every calibration sample exits at the first exit, so there is "
                               "nothing to forecast; raise the target (a higher --target-accuracy or a lower "
                               "--max-drop-pp)")
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


def _real(v: Any) -> float:
    """``v`` as a float when it is a number; ValueError for true or "0.5", which float() reads as 1.0 or 0.5."""
    if not is_number(v):
        raise ValueError("{!r} is not a number".format(v))
    return float(v)


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
    def from_dict(cls, d: Dict[str, Any], n_exits: Optional[int] = None) -> "ForecastTable":
        """The table in ``d``, checked; with ``n_exits``, also checked to fit a bundle with that many exits."""
        try:
            t = cls(whole_number(d["bins"]), [[whole_number(v) for v in row] for row in d["planned"]],
                    [[whole_number(v) for v in row] for row in d["jump"]])
        except (KeyError, TypeError, ValueError, OverflowError) as err:  # OverflowError: 10**400 as a float
            raise CalibrationError("calibration.json: the forecast table is malformed ({}); run `edgeexit calibrate` again".format(err)) from None
        if t.bins < 1:
            raise CalibrationError("calibration.json: the forecast table has {} bins, not a positive number; run `edgeexit "
                                   "calibrate` again".format(t.bins))
        if any(len(row) != t.bins for row in t.planned + t.jump):
            raise CalibrationError("calibration.json: forecast table rows must have {} bins; run `edgeexit calibrate` again".format(t.bins))
        if len(t.planned) != len(t.jump) or (n_exits is not None and len(t.planned) != n_exits):
            raise CalibrationError("calibration.json: the forecast table was built for another bundle (it needs one row per "
                                   "exit); run `edgeexit calibrate` again")
        n = len(t.planned)
        # The row of exit e is looked up at an unconfident head e: both the forecast (the planner sizes the
        # remaining blocks by it) and the next head to evaluate lie after e, as distill() writes them; an exit
        # at or before e would never be reached (the sample runs to the final exit), one past the last is no
        # exit at all (the planner indexes its tables with it). The final exit's row is never looked up (that
        # head is always accepted): any exit of the bundle will do there.
        for key, rows in (("planned", t.planned), ("jump", t.jump)):
            for e, row in enumerate(rows):
                low = e + 1 if e < n - 1 else 0
                bad = [v for v in row if not low <= v < n]
                if bad:
                    raise CalibrationError("calibration.json: forecast table {} value {} at exit {} is not an exit from {} "
                                           "to {}; run `edgeexit calibrate` again".format(key, bad[0], e, low, n - 1))
        return t


def distill(fc: Forecaster, x: np.ndarray, cur: np.ndarray, cost: np.ndarray, bins: int = LUT_BINS,
            enabled: Optional[Sequence[bool]] = None) -> ForecastTable:
    """Tabulate ``fc`` over the states ``x`` (features, first column the max-softmax) at exits ``cur``.

    Only ``enabled`` exits (None: all; the final exit always is) are forecast or jumped to, as the live
    MLP masks them. An empty cell copies its nearest filled neighbour; a row no state reaches at all
    forecasts and jumps to the next enabled exit.
    """
    n_exits = fc.n_exits
    on = np.ones(n_exits, dtype=bool) if enabled is None else np.asarray(enabled, dtype=bool).copy()
    on[-1] = True
    z = fc.logits(x)
    z = np.where((np.arange(n_exits)[None, :] <= cur[:, None]) | ~on[None, :], -np.inf, z)
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
                # every later enabled exit stays possible, as live (PredictivePolicy weighs disabled ones 0)
                q[e + 1 :] = np.where(on[e + 1 :], np.maximum(q[e + 1 :], np.exp(-20.0) * q.max()), 0.0)
                row_p[b] = int(np.argmax(q))
                row_j[b] = e + 1 + int(np.argmin(cost[e + 1 :, e + 1 :] @ q[e + 1 :]))
        filled = [b for b in range(bins) if row_p[b] is not None]
        nxt = next((j for j in range(e + 1, n_exits) if on[j]), n_exits - 1)
        planned.append([row_p[min(filled, key=lambda f: abs(f - b))] if filled else nxt for b in range(bins)])  # type: ignore
        jump.append([row_j[min(filled, key=lambda f: abs(f - b))] if filled else nxt for b in range(bins)])  # type: ignore
    return ForecastTable(bins, planned, jump)


ENTRY_TREE_DEPTH = 4
ENTRY_TREE_MIN_LEAF = 10


@dataclass
class EntryTree:
    """The entry forecaster distilled into a shallow decision tree over the first block's channel means.

    The MLP's forward pass and expected-cost choice cost ~15 us of numpy calls on every inference; a
    depth-4 tree grown to reproduce its choices needs the channel sums (one product over the int8
    output) and four comparisons. Nodes are stored as parallel lists, children after parents; leaves
    have ``feature`` -1. Each node holds the MLP's commonest forecast (most likely exit) and commonest
    choice of the exit to evaluate first (least expected cost) over the calibration samples reaching it.
    """

    feature: List[int]
    threshold: List[float]  # on dequantized channel means: go right when mean > threshold
    left: List[int]
    right: List[int]
    planned: List[int]
    jump: List[int]

    def leaf(self, x: List[float]) -> int:
        """The leaf of feature vector ``x`` (thresholds as stored, or as :meth:`on_sums` returns)."""
        node = 0
        feature, threshold = self.feature, self.threshold
        while feature[node] >= 0:
            node = self.right[node] if x[feature[node]] > threshold[node] else self.left[node]
        return node

    def on_sums(self, positions: int, scale: float, zero_point: int, group_sizes: Optional[Sequence[float]] = None) -> "EntryTree":
        """The same tree with thresholds on raw int8 channel *sums* over ``positions`` values:
        mean = scale * (sum / positions - zero_point), so mean > t  <=>  sum > (t / scale + zero_point) * positions.
        With ``group_sizes`` (channels per feature, :func:`channel_groups`) the sums are group sums, each over
        ``positions`` times its group's size."""
        th = [(t / scale + zero_point) * positions * (1.0 if group_sizes is None else float(group_sizes[f]))
              if f >= 0 else 0.0 for f, t in zip(self.feature, self.threshold)]
        return EntryTree(list(self.feature), th, list(self.left), list(self.right), list(self.planned), list(self.jump))

    @property
    def depth(self) -> int:
        d = [0] * len(self.feature)
        for n, f in enumerate(self.feature):
            if f >= 0:
                d[self.left[n]] = d[self.right[n]] = d[n] + 1
        return max(d)

    def to_dict(self) -> Dict[str, Any]:
        return {"feature": self.feature, "threshold": self.threshold, "left": self.left, "right": self.right,
                "planned": self.planned, "jump": self.jump}

    @classmethod
    def from_dict(cls, d: Dict[str, Any], n_features: Optional[int] = None, n_exits: Optional[int] = None) -> "EntryTree":
        try:
            t = cls([whole_number(v) for v in d["feature"]], [_real(v) for v in d["threshold"]], [whole_number(v) for v in d["left"]],
                    [whole_number(v) for v in d["right"]], [whole_number(v) for v in d["planned"]], [whole_number(v) for v in d["jump"]])
        except (KeyError, TypeError, ValueError, OverflowError) as err:  # OverflowError: 10**400 as a float
            raise CalibrationError("calibration.json: the entry tree is malformed ({}); run `edgeexit calibrate` again".format(err)) from None
        n = len(t.feature)
        ok = n > 0 and all(len(v) == n for v in (t.threshold, t.left, t.right, t.planned, t.jump))
        # Children come after their parent, so a walk always ends at a leaf.
        ok = ok and all(f < 0 or (node < t.left[node] < n and node < t.right[node] < n) for node, f in enumerate(t.feature))
        ok = ok and all(f < 0 or n_features is None or f < n_features for f in t.feature)
        ok = ok and all(n_exits is None or 0 <= v < n_exits for v in t.planned + t.jump)
        # A NaN threshold sends every sample left, silently: not a tree calibration can have grown.
        ok = ok and all(math.isfinite(v) for v in t.threshold)
        if not ok:
            raise CalibrationError("calibration.json: the entry tree does not fit this bundle; run `edgeexit calibrate` again")
        return t


def _gini_split(x: np.ndarray, y: np.ndarray, n_classes: int, min_leaf: int) -> Optional[Tuple[int, float]]:
    """The (feature, threshold) minimizing the children's summed Gini impurity, or None."""
    n = len(y)
    if n < max(2, 2 * min_leaf):  # no split leaves both children min_leaf samples (and 0 or 1 cannot split)
        return None
    best, best_score = None, float(n - np.square(np.bincount(y, minlength=n_classes)).sum() / n) - 1e-9
    onehot = np.eye(n_classes)[y]
    for f in range(x.shape[1]):
        order = np.argsort(x[:, f], kind="mergesort")
        v = x[order, f]
        left = np.cumsum(onehot[order], axis=0)[:-1]  # class counts of the first i+1 samples
        nl = np.arange(1, n)[:, None]
        right = left[-1] + onehot[order[-1]] - left
        score = (nl[:, 0] - np.square(left).sum(1) / nl[:, 0]) + ((n - nl[:, 0]) - np.square(right).sum(1) / (n - nl[:, 0]))
        valid = (v[1:] > v[:-1]) & (nl[:, 0] >= min_leaf) & (n - nl[:, 0] >= min_leaf)
        if not valid.any():
            continue
        i = int(np.argmin(np.where(valid, score, np.inf)))
        if score[i] < best_score:
            best, best_score = (f, float((v[i] + v[i + 1]) / 2.0)), float(score[i])
    return best


def fit_entry_tree(x: np.ndarray, labels: np.ndarray, planned: np.ndarray,
                   depth: int = ENTRY_TREE_DEPTH, min_leaf: int = ENTRY_TREE_MIN_LEAF) -> EntryTree:
    """Grow a Gini tree on ``labels`` (the MLP's choices of the exit to evaluate first) over ``x``; each
    node carries the commonest choice and the commonest forecast (``planned``) of its samples."""
    tree = EntryTree([], [], [], [], [], [])
    n_classes = int(max(labels.max(), planned.max())) + 1

    def grow(idx: np.ndarray, level: int) -> int:
        node = len(tree.feature)
        tree.feature.append(-1)
        tree.threshold.append(0.0)
        tree.left.append(-1)
        tree.right.append(-1)
        tree.planned.append(int(np.argmax(np.bincount(planned[idx], minlength=n_classes))))
        tree.jump.append(int(np.argmax(np.bincount(labels[idx], minlength=n_classes))))
        split = None if level >= depth else _gini_split(x[idx], labels[idx], n_classes, min_leaf)
        if split is not None:
            f, t = split
            tree.feature[node], tree.threshold[node] = f, t
            go_right = x[idx, f] > t
            tree.left[node] = grow(idx[~go_right], level + 1)
            tree.right[node] = grow(idx[go_right], level + 1)
        return node

    grow(np.arange(len(labels)), 0)
    return tree


def distill_entry(fc: Forecaster, pooled: np.ndarray, cost: np.ndarray, enabled: List[bool],
                  depth: int = ENTRY_TREE_DEPTH) -> EntryTree:
    """Distill the entry forecaster ``fc`` into an :class:`EntryTree` over the calibration samples'
    pooled features; ``cost`` is the entry jump-cost matrix (rows of disabled exits unreachable)."""
    z = fc.logits(pooled) + np.where(enabled, 0.0, -1e9)[None, :]
    w = np.exp(np.maximum(z - z.max(axis=1, keepdims=True), -20.0)) * np.asarray(enabled, dtype=np.float64)
    choice = np.argmin(w @ cost.T, axis=1)  # what the MLP policy would evaluate first, per sample
    return fit_entry_tree(pooled, choice, np.argmax(z, axis=1), depth)
