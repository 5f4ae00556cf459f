"""The training strategies of issue 7: stop-gradient assignment, frozen backbone, exportable bundles."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tools

STAGES = [(4, 2), (8, 2), (8, 1), (8, 1)]


def test_block_assignment_follows_the_rule() -> None:
    from tools.strategies import block_assignment

    after = [0, 1, 2, 3, 4, 5]
    spans = lambda a: [(r.start, r.stop - 1) for r in a]  # noqa: E731
    # Overlap 3 (the paper's CIFAR-100 setting): exit k trains blocks k-2..k.
    assert spans(block_assignment(after, overlap=3)) == [(0, 0), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5)]
    # Overlap 1 = local error: each block only by its own exit.
    assert spans(block_assignment(after, overlap=1)) == [(k, k) for k in range(6)]
    # Grouping: a gradient cut before block 3 -> groups 0-2 and 3-5.
    assert spans(block_assignment(after, groups=[3])) == [(0, 0), (0, 1), (0, 2), (3, 3), (3, 4), (3, 5)]
    # The final exit's path may train every block.
    assert spans(block_assignment(after, overlap=1, include_final=True))[-1] == (0, 5)
    # No rule: joint training.
    assert spans(block_assignment(after)) == [(0, k) for k in range(6)]
    # Exits not after every block: windows count exits, not blocks.
    assert spans(block_assignment([1, 3, 5], overlap=2)) == [(0, 1), (0, 3), (2, 5)]
    with pytest.raises(ValueError):
        block_assignment(after, overlap=0)


@pytest.mark.parametrize("rule", [dict(overlap=2), dict(groups=[2]), dict(overlap=1, include_final=True)])
def test_stop_gradients_cut_exactly_the_blocks_outside_each_exits_set(rule, tiny_splits) -> None:
    import tensorflow as tf

    from tools.strategies import block_assignment, block_dependent_logits
    from tools.train import build_backbone
    from tools.training import forward_all, seed_everything

    seed_everything(3)
    net = build_backbone(STAGES, prefix="sg_")
    assignment = block_assignment([e.after_block for e in net.exits], **rule)
    x = tf.constant(tiny_splits.to_float(tiny_splits.train.x[:16]))
    y = tf.constant(tiny_splits.train.y[:16])
    # Forward values are the plain chain's.
    plain = forward_all(net, x, training=False)[1]
    for a, b in zip(plain, block_dependent_logits(net, x, assignment, training=False)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)
    for e, window in enumerate(assignment):
        with tf.GradientTape() as tape:
            logits = block_dependent_logits(net, x, assignment, training=False)[e]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(y, tf.int32), logits=logits))
        block_vars = [b.trainable_variables for b in net.blocks]
        grads = tape.gradient(loss, block_vars)
        for k, gs in enumerate(grads):
            norm = sum(float(tf.reduce_sum(tf.abs(g))) for g in gs if g is not None)
            if k in window:
                assert norm > 0, f"exit{e} should train block{k}"
            else:
                assert norm == 0, f"exit{e} must not train block{k} (rule {rule})"


def _snapshot(models) -> list[bytes]:
    return [np.asarray(v).tobytes() for m in models for v in m.weights]  # incl. BN moving stats


def test_post_trained_backbone_is_bit_identical(tiny_splits, monkeypatch) -> None:
    import tools.train
    from tools.train import TrainConfig, build_backbone, train_strategy
    from tools.strategies import joint_loss
    from tools.training import seed_everything, train_loop

    seed_everything(4)
    backbone = build_backbone(STAGES, prefix="pt_", exits="final")
    frozen = backbone.blocks + [backbone.exits[-1].model]
    train_loop(backbone, joint_loss([1.0]), [v for m in frozen for v in m.trainable_variables],
               tiny_splits.to_float(tiny_splits.train.x), tiny_splits.train.y, epochs=1, steps=20,
               log=lambda _m: None)
    before = _snapshot(frozen)
    attach, initial = tools.train.attach_confidence_branches, []  # the branches as built, before any training

    def attach_and_keep(*args, **kwargs):
        net = attach(*args, **kwargs)
        initial.append(_snapshot([e.model for e in net.exits[:-1]]))
        return net

    monkeypatch.setattr(tools.train, "attach_confidence_branches", attach_and_keep)
    cfg = TrainConfig(strategy="post-trained", steps=15, augment=False, stages=STAGES, prefix="pt_")
    net = train_strategy(cfg, tiny_splits, log=lambda _m: None, backbone=backbone)
    branches = [e.model for e in net.exits[:-1]]
    assert all(e.has_confidence for e in net.exits[:-1]) and not net.exits[-1].has_confidence
    assert net.blocks == backbone.blocks and net.exits[-1] is backbone.exits[-1]
    assert _snapshot(frozen) == before
    # ... while the branches did train (so the check above could fail): they moved from their own initial weights.
    # (Comparing with freshly built branches always differed: their random initialisation came later.)
    assert len(initial) == 1 and _snapshot(branches) != initial[0]


def test_pteenet_costs_are_fractions_of_the_full_path() -> None:
    from tools.strategies import exit_costs

    costs = exit_costs([100, 100, 200], [10, 10, 20], [0, 1, 2])
    assert costs == pytest.approx([110 / 440, 220 / 440, 1.0])


@pytest.mark.parametrize("strategy,extra", [
    ("joint", dict(weights="eenet", distill=0.5)),
    ("block-dependent", dict(overlap=2, include_final=True)),
    ("post-trained", dict(backbone_steps=40, backbone_targets=True)),
])
def test_every_strategy_exports_a_bundle_the_runtime_accepts(strategy, extra, tiny_splits,
                                                            tmp_path: Path) -> None:
    from edgeexit.bundle import load_bundle
    from edgeexit.runtime import Runtime
    from tools.export import export_bundle
    from tools.train import TrainConfig, train_strategy, training_record
    from tools.training import seed_everything

    seed_everything(0)
    cfg = TrainConfig(strategy=strategy, steps=40, augment=False, stages=STAGES,
                      prefix=strategy.replace("-", "_") + "_", **extra)
    net = train_strategy(cfg, tiny_splits, log=lambda _m: None)
    out = tmp_path / strategy
    export_bundle(net, out, splits=tiny_splits, name=f"tiny-{strategy}", min_agreement=0.9,
                  training=training_record(cfg), verbose=False)
    bundle = load_bundle(out)
    Runtime(bundle).close()  # every manifest tensor, quantization included, matches its .tflite
    assert len(bundle.blocks) == len(STAGES) and len(bundle.exits) == len(STAGES)
    assert bundle.manifest.name == f"tiny-{strategy}"
    has_conf = [e.confidence_output is not None for e in bundle.exits]
    if strategy == "post-trained":
        assert has_conf == [True] * (len(STAGES) - 1) + [False]
        assert all(e.confidence_output.shape == [1, 1] for e in bundle.exits[:-1])
    else:
        assert not any(has_conf)


@pytest.mark.parametrize("strategy", ["joint", "block-dependent", "post-trained"])
def test_trained_nets_leave_with_the_batchnorm_statistics_of_their_data(strategy, tiny_splits) -> None:
    """Audit defect: after a short fit the moving statistics (momentum 0.99) were still near their 0/1 init, so the
    exported, inference-mode exits were near chance (0.66 0.40 0.10 ... after one epoch) while training mode
    scored 0.74..0.98. Now inference mode on the training inputs is training mode."""
    from tools.train import TrainConfig, train_strategy
    from tools.training import forward_all, seed_everything

    seed_everything(5)
    cfg = TrainConfig(strategy=strategy, steps=10, backbone_steps=10, augment=False, stages=STAGES,
                      prefix="bn_" + strategy.replace("-", "_") + "_")
    net = train_strategy(cfg, tiny_splits, log=lambda _m: None)
    x = tiny_splits.to_float(tiny_splits.train.x)  # 1024 <= BN_SAMPLES: all of them
    inference = forward_all(net, x, training=False)
    training = forward_all(net, x, training=True)
    for a, b in zip(inference[0] + inference[1], training[0] + training[1]):
        a, b = (a[0], b[0]) if isinstance(a, list) else (a, b)  # a confidence head: [logits, confidence]
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-3)


def test_recompute_batchnorm_only_touches_the_models_named(tiny_splits) -> None:
    from tools.train import attach_confidence_branches, build_backbone
    from tools.training import recompute_batchnorm

    net = attach_confidence_branches(build_backbone(STAGES, prefix="only_", exits="final"), prefix="only_")
    branches = [e.model for e in net.exits[:-1]]
    kept = net.blocks + [net.exits[-1].model]
    before_kept, before_branches = _snapshot(kept), _snapshot(branches)
    assert recompute_batchnorm(net, tiny_splits.to_float(tiny_splits.train.x[:256]), only=branches) == len(branches)
    assert _snapshot(kept) == before_kept
    assert _snapshot(branches) != before_branches
