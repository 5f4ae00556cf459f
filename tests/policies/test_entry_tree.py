"""The entry forecaster's distilled tree: growing, storage, and the folded inference path."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgeexit.errors import CalibrationError
from edgeexit.forecaster import (MAX_POOLED_FEATURES, EntryTree, Forecaster, fit, fit_entry_tree, pooled_features,
                                 pooled_width)
from edgeexit.policies.base import SampleState
from edgeexit.policies.predictive import PredictivePolicy


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


# A wide entry block: 100 channels pool into MAX_POOLED_FEATURES groups of one or two adjacent channels.
WIDE = 100


def _wide_outputs(n: int, seed: int) -> np.ndarray:
    return np.random.RandomState(seed).randint(-128, 128, size=(n, 1, 3, 3, WIDE)).astype(np.int8)


def test_a_wide_block_pools_into_group_means():
    out, scale, zp = _wide_outputs(1, 3)[0], 0.05, 4
    means = scale * (out.reshape(9, WIDE).astype(np.float64).mean(axis=0) - zp)
    group = np.arange(WIDE) * MAX_POOLED_FEATURES // WIDE
    want = np.array([means[group == g].mean() for g in range(MAX_POOLED_FEATURES)])
    assert pooled_width(WIDE) == MAX_POOLED_FEATURES and pooled_width(16) == 16
    assert np.allclose(pooled_features(out, scale, zp), want, atol=1e-5)


def test_forecasters_on_a_wide_block_stay_at_a_few_thousand_parameters():
    """256 channels one feature each made the two MLPs 8.5k parameters."""
    outs = np.random.RandomState(4).randint(-128, 128, size=(60, 1, 2, 2, 256)).astype(np.int8)
    x = np.stack([pooled_features(o, 0.05, 0) for o in outs]).astype(np.float64)
    labels = np.arange(60) % 4
    entry = fit(x, np.full(60, -1), labels, 4, True, epochs=2)
    assert entry.w1.shape[0] == MAX_POOLED_FEATURES and 2 * entry.n_params < 4000


class _WideRuntime:
    """What PredictivePolicy.bind reads of a runtime: four exits, one per block, the first block WIDE wide."""

    def __init__(self) -> None:
        out = SimpleNamespace(shape=(1, 3, 3, WIDE), scale=0.05, zero_point=4)
        self.bundle = SimpleNamespace(blocks=[SimpleNamespace(output=out)] * 4)
        self.exits, self.exit_blocks = [0, 1, 2, 3], [0, 1, 2, 3]
        self.macs_to_exit, self.head_macs = [100.0, 200.0, 300.0, 400.0], [10.0, 10.0, 10.0, 10.0]


@pytest.mark.parametrize("distilled", [False, True])
def test_the_entry_forecast_on_a_wide_block_is_the_forecasters_own(distilled):
    """The policy folds the channel groups into the MLP's first layer (or the tree's thresholds on sums): it must
    choose what the forecaster (or tree) says on the group means calibration trained it on."""
    outs = _wide_outputs(300, 5)
    x = np.stack([pooled_features(o, 0.05, 4) for o in outs]).astype(np.float64)
    rng = np.random.RandomState(6)
    entry = Forecaster(w1=rng.normal(0, 1, (MAX_POOLED_FEATURES, 8)), b1=rng.normal(0, 1, 8), w2=rng.normal(0, 2, (8, 4)),
                       b2=np.zeros(4), mean=x.mean(axis=0), std=x.std(axis=0), n_exits=4, use_block_features=False)
    head = Forecaster(w1=np.ones((3, 2)), b1=np.zeros(2), w2=np.ones((2, 4)), b2=np.zeros(4), mean=np.zeros(3),
                      std=np.ones(3), n_exits=4, use_block_features=False)
    z = entry.logits(x)
    tree = fit_entry_tree(x, z.argmax(axis=1), z.argmax(axis=1), depth=4, min_leaf=5) if distilled else None
    pol = PredictivePolicy(head, [0.9, 0.9, 0.9, 0.0], entry=entry, entry_risk=1.0, entry_tree=tree, entry_exit=0)
    pol.bind(_WideRuntime())
    for o, row, zi in zip(outs, x, z):
        state = SampleState(0)
        pol.start(state)
        state.block_output = o
        pol.wants_head(0, state)
        if distilled:
            leaf = tree.leaf(list(row))
            assert (state.planned_exit, pol._target) == (max(tree.planned[leaf], tree.jump[leaf]), tree.jump[leaf])
        else:
            want = int((pol.entry_cost @ np.exp(np.maximum(zi - zi.max(), -20.0))).argmin())
            assert pol._target == want and state.planned_exit == max(int(zi.argmax()), want)
    assert len(set(tree.jump if distilled else z.argmax(axis=1))) > 1, "the forecast must vary, or the test checks nothing"
