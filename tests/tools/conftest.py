"""Fixtures for the tools tests: a tiny multi-exit net trained for a few steps on real digits."""
from __future__ import annotations

from pathlib import Path

import pytest



@pytest.fixture(scope="session")
def tiny_splits():
    from tools.data import mnist_splits

    splits = mnist_splits(seed=1, n_calibration=200, n_evaluation=100)
    splits.train.x = splits.train.x[:1024]
    splits.train.y = splits.train.y[:1024]
    return splits


TINY_STAGES = [(4, 2), (8, 2), (8, 1)]  # (filters, stride): 28 -> 14 -> 7 -> 7


def build_tiny_net(prefix: str = ""):
    """Three conv stages, a pooled dense exit after each."""
    from tools.multi_exit import ExitHead, MultiExitNet, conv_block, pooled_dense_head

    blocks, exits, shape = [], [], (28, 28, 1)
    for k, (filters, stride) in enumerate(TINY_STAGES):
        blocks.append(conv_block(shape, filters, stride, name=f"{prefix}block{k}"))
        shape = tuple(int(d) for d in blocks[-1].output.shape[1:])
        exits.append(ExitHead(pooled_dense_head(shape, 10, name=f"{prefix}exit{k}"), k))
    return MultiExitNet(blocks, exits, (28, 28, 1), 10)


def train_tiny(net, splits, steps: int = 60, seed: int = 0):
    from tools.strategies import joint_loss
    from tools.training import exit_weights, train_loop

    variables = [v for m in net.blocks + [e.model for e in net.exits] for v in m.trainable_variables]
    train_loop(net, joint_loss(exit_weights("uniform", len(net.exits))), variables,
               splits.to_float(splits.train.x), splits.train.y, epochs=1, steps=steps,
               seed=seed, log=lambda _m: None)
    return net


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_splits) -> Path:
    from tools.export import export_bundle
    from tools.training import seed_everything

    seed_everything(0)
    net = train_tiny(build_tiny_net("tiny_"), tiny_splits)
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(net, out, splits=tiny_splits, name="tiny", min_agreement=0.9,
                  training={"seed": 0, "strategy": "joint", "script": "tests"}, verbose=False)
    return out
