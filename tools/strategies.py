"""Training strategies of the seed papers, as loss functions for :func:`tools.training.train_loop`.

- :func:`joint_loss`: weighted sum of exit cross-entropies (SDN / EENet), optional KL
  distillation from the final exit (EENet: T=3).
- :func:`block_dependent_loss`: Han et al.'s grouping/overlapping rule with stop-gradient copies.
- :func:`pteenet_loss`: PTEENet's confidence-weighted, cost-aware loss for post-trained branches.
"""
from __future__ import annotations

from typing import Callable

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
