"""The entry forecaster's distilled tree: growing, storage, and the folded inference path."""
from __future__ import annotations

import numpy as np
import pytest

from edgeexit.errors import CalibrationError
from edgeexit.forecaster import EntryTree, fit_entry_tree, pooled_features


def test_tree_separates_what_one_split_separates():
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, (400, 5))
    labels = (x[:, 3] > 0.6).astype(np.int64) + 1  # exits 1 and 2
    planned = labels + 1
    tree = fit_entry_tree(x, labels, planned, depth=3, min_leaf=5)
    assert tree.feature[0] == 3 and abs(tree.threshold[0] - 0.6) < 0.02
    leaves = [tree.leaf(list(row)) for row in x]
    assert [tree.jump[n] for n in leaves] == labels.tolist()
    assert [tree.planned[n] for n in leaves] == planned.tolist()


def test_tree_respects_depth_and_leaf_size():
    rng = np.random.RandomState(1)
    x = rng.normal(size=(300, 4))
    labels = rng.randint(0, 4, 300)
    tree = fit_entry_tree(x, labels, labels, depth=2, min_leaf=40)
    assert tree.depth <= 2
    counts = np.bincount([tree.leaf(list(r)) for r in x], minlength=len(tree.feature))
    assert all(counts[n] >= 40 for n, f in enumerate(tree.feature) if f < 0)


def test_thresholds_on_raw_sums_pick_the_same_leaf_as_dequantized_means():
    """Inference compares int8 channel sums against folded thresholds; that must route every block
    output exactly as the dequantized channel means (what the tree was grown on) do."""
    rng = np.random.RandomState(2)
    outs = rng.randint(-128, 128, size=(200, 1, 6, 6, 4)).astype(np.int8)
    scale, zp = 0.0213, -17
    means = np.stack([pooled_features(o, scale, zp) for o in outs]).astype(np.float64)
    labels = (means[:, 1] > np.median(means[:, 1])).astype(np.int64) + 2 * (means[:, 2] > np.median(means[:, 2]))
    tree = fit_entry_tree(means, labels, labels, depth=3, min_leaf=5)
    folded = tree.on_sums(36, scale, zp)
    for o, m in zip(outs, means):
        sums = o.reshape(36, 4).astype(np.float64).sum(axis=0).tolist()
        assert folded.leaf(sums) == tree.leaf(list(m))


def test_round_trip_and_malformed_trees_name_the_fix():
    t = EntryTree([0, -1, -1], [0.5, 0.0, 0.0], [1, -1, -1], [2, -1, -1], [1, 1, 2], [1, 1, 3])
    assert EntryTree.from_dict(t.to_dict(), n_features=1, n_exits=4) == t
    for bad in ({"feature": [0]},  # missing lists
                dict(t.to_dict(), left=[0, -1, -1]),  # a child that is not after its parent: a cycle
                dict(t.to_dict(), jump=[1, 1, 9])):  # an exit the bundle lacks
        with pytest.raises(CalibrationError, match="run `edgeexit calibrate` again"):
            EntryTree.from_dict(bad, n_features=1, n_exits=4)
    with pytest.raises(CalibrationError, match="run `edgeexit calibrate` again"):
        EntryTree.from_dict(t.to_dict(), n_features=0, n_exits=4)  # splits on a channel the block lacks
