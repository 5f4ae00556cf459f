"""Training strategies of the seed papers, as loss functions for :func:`tools.training.train_loop`.

- :func:`joint_loss`: weighted sum of exit cross-entropies (SDN / EENet), optional KL
  distillation from the final exit (EENet: T=3).
- :func:`block_dependent_loss`: Han et al.'s grouping/overlapping rule with stop-gradient copies.
- :func:`pteenet_loss`: PTEENet's confidence-weighted, cost-aware loss for post-trained branches.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

import tensorflow as tf

from tools.multi_exit import MultiExitNet
from tools.training import forward_all


def _ce(y, logits):
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits))


def _distill(student_logits, teacher_logits, temperature: float):
    """KL(teacher || student) at temperature T, scaled by T^2 (Hinton); teacher not trained by it."""
    t = tf.stop_gradient(tf.nn.softmax(teacher_logits / temperature))
    log_s = tf.nn.log_softmax(student_logits / temperature)
    kl = tf.reduce_sum(t * (tf.math.log(t + 1e-8) - log_s), axis=1)
    return tf.reduce_mean(kl) * temperature ** 2


def joint_loss(weights: list[float], distill_alpha: float = 0.0,
               temperature: float = 3.0) -> Callable:
    """Sum_k w_k CE(exit k) (+ alpha * KL from the final exit to every earlier exit)."""

    def loss_fn(net: MultiExitNet, x, y, training: bool):
        _, logits = forward_all(net, x, training)
        loss = tf.add_n([w * _ce(y, lg) for w, lg in zip(weights, logits)])
        if distill_alpha > 0:
            loss += distill_alpha * tf.add_n(
                [_distill(lg, logits[-1], temperature) for lg in logits[:-1]])
        return loss, logits

    return loss_fn


# --- block-dependent losses (Han et al., TNNLS 2023) --------------------------------------------
def block_assignment(after_block: list[int], *, overlap: int | None = None,
                     groups: list[int] | None = None, include_final: bool = False) -> list[range]:
    """Which blocks each exit's loss may train.

    ``overlap`` w: exit e trains the blocks since exit e-w's block (exclusive), i.e. with an exit
    after every block, blocks e-w+1..e: every block is trained by w exits (its own and the next
    w-1); w=1 is local-error training. ``groups``: block indices where a new group starts
    (e.g. [3] gives groups 0-2 and 3-end); an exit trains only blocks of its own group up to it.
    Both given: the stricter (later) start wins. ``include_final``: the final exit trains every
    block. Neither given: every exit trains all blocks before it (plain joint training).
    """
    n = len(after_block)
    if overlap is not None and overlap < 1:
        raise ValueError("overlap must be >= 1")
    bounds = sorted(set([0] + list(groups or [])))
    out = []
    for e, a in enumerate(after_block):
        start = 0
        if overlap is not None and e - overlap >= 0:
            start = after_block[e - overlap] + 1
        start = max(start, max(b for b in bounds if b <= a))
        if include_final and e == n - 1:
            start = 0
        out.append(range(start, a + 1))
    return out


def block_dependent_logits(net: MultiExitNet, x, assignment: list[range], training: bool):
    """Every exit's logits, where exit e's gradient reaches only the blocks in ``assignment[e]``.

    Forward values equal the plain chain's: exit e recomputes its window of blocks from a
    stop-gradient copy of the output just before the window (same weights, same input values),
    so gradients into earlier blocks are cut for this exit only.
    """
    outs = []
    h = x
    for block in net.blocks:
        h = block(h, training=training)
        outs.append(h)
    logits = []
    for e, window in zip(net.exits, assignment):
        if window.start == 0:
            h = outs[e.after_block]  # the whole chain trains it: reuse, no recomputation
        else:
            h = tf.stop_gradient(outs[window.start - 1])
            for k in window:
                h = net.blocks[k](h, training=training)
        out = e.model(h, training=training)
        logits.append(out[0] if e.has_confidence else out)
    return logits


def block_dependent_loss(assignment: list[range], weights: list[float]) -> Callable:
    def loss_fn(net: MultiExitNet, x, y, training: bool):
        logits = block_dependent_logits(net, x, assignment, training)
        return tf.add_n([w * _ce(y, lg) for w, lg in zip(weights, logits)]), logits

    return loss_fn


# --- PTEENet (Lahiany & Aperstein, 2022) --------------------------------------------------------
def exit_costs(block_macs: list[int], exit_macs: list[int], after_block: list[int]) -> list[float]:
    """Cost of leaving at exit i, as a fraction of going all the way to the final exit.

    Counts what the confidence-head policy really runs: blocks up to exit i plus heads 0..i.
    """
    cum = np.cumsum(block_macs)
    costs = [float(cum[a] + sum(exit_macs[: i + 1])) for i, a in enumerate(after_block)]
    return [c / costs[-1] for c in costs]


def pteenet_loss(costs: list[float], lambda_cost: float = 1.0,
                 use_backbone_targets: bool = False) -> Callable:
    """PTEENet's loss over the branches, with the backbone frozen (inference mode, no updates).

    Backward recursion from the final exit (its confidence is 1):
    P'_i = c_i p_i + (1 - c_i) P'_{i+1};  C'_i = c_i cost_i + (1 - c_i) C'_{i+1};
    loss = NLL(P'_0[target]) + lambda * mean(C'_0). Targets are the labels or, with
    ``use_backbone_targets``, the frozen backbone's own predictions.
    """

    def loss_fn(net: MultiExitNet, x, y, training: bool):
        outs = []
        h = x
        for block in net.blocks:
            h = block(h, training=False)  # frozen: BN uses (and keeps) its moving statistics
            outs.append(h)
        probs, confs, logits = [], [], []
        for i, e in enumerate(net.exits):
            last = i == len(net.exits) - 1
            out = e.model(outs[e.after_block], training=training and not last)
            lg = out[0] if e.has_confidence else out
            logits.append(lg)
            probs.append(tf.nn.softmax(lg))
            confs.append(tf.ones_like(lg[:, :1]) if last else out[1])
        target = tf.argmax(logits[-1], axis=1) if use_backbone_targets else tf.cast(y, tf.int64)
        target = tf.stop_gradient(target)
        p_acc, c_acc = probs[-1], tf.fill(tf.shape(confs[-1]), costs[-1])
        for i in range(len(probs) - 2, -1, -1):
            c = confs[i]
            p_acc = c * probs[i] + (1.0 - c) * p_acc
            c_acc = c * costs[i] + (1.0 - c) * c_acc
        picked = tf.gather(p_acc, target, axis=1, batch_dims=1)
        nll = -tf.reduce_mean(tf.math.log(picked + 1e-8))
        return nll + lambda_cost * tf.reduce_mean(c_acc), logits

    return loss_fn
