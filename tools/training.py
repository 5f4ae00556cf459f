"""A small custom training loop for multi-exit nets (tf.GradientTape), shared by every strategy.

A strategy supplies ``loss_fn(net, x, y, training) -> (loss, per_exit_logits)`` and the list of
variables it trains; the loop handles batching, seeding and reporting.
"""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from tools.multi_exit import MultiExitNet


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TF, and ask TF for deterministic kernels."""
    import keras
    import tensorflow as tf

    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # older TF: best effort
        pass


def exit_weights(kind: str, n_exits: int) -> list[float]:
    """Per-exit loss weights.

    ``uniform``: all 1 (SDN-style sum). ``eenet``: proportional to k+1, as EENet's train.py weighs
    exits ((k+1)/(K(K+1)), which sums to 1/2), normalised here to sum to K so the learning rate means
    the same. So a ``--distill`` alpha weighs the KL term against cross-entropy weights 2K times
    EENet's: EENet's alpha_kl of 0.01 corresponds to about 0.01 * 2K here.
    """
    if kind == "uniform":
        return [1.0] * n_exits
    if kind == "eenet":
        tot = n_exits * (n_exits + 1) / 2
        return [n_exits * (k + 1) / tot for k in range(n_exits)]
    raise ValueError(f"unknown exit weighting {kind!r}; use uniform or eenet")


def forward_all(net: MultiExitNet, x, training: bool):
    """Block outputs and every exit's outputs (logits, or [logits, confidence])."""
    outs = []
    h = x
    for block in net.blocks:
        h = block(h, training=training)
        outs.append(h)
    return outs, [e.model(outs[e.after_block], training=training) for e in net.exits]


def train_loop(
    net: MultiExitNet,
    loss_fn: Callable,
    variables: list,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    log: Callable[[str], None] = print,
    steps: int | None = None,
) -> None:
    """Adam with a cosine-decayed learning rate over ``epochs`` (or exactly ``steps`` steps)."""
    import keras
    import tensorflow as tf

    n_batches = max(1, len(x) // batch_size)
    total = steps if steps is not None else epochs * n_batches
    sched = keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, total))
    opt = keras.optimizers.Adam(sched)

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss, _ = loss_fn(net, xb, yb, True)
        grads = tape.gradient(loss, variables)
        opt.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
        return loss

    rng = np.random.default_rng(seed)
    done = 0
    epoch = 0
    while done < total:
        t0 = time.time()
        order = rng.permutation(len(x))
        losses = []
        for b in range(n_batches):
            if done >= total:
                break
            idx = order[b * batch_size : (b + 1) * batch_size]
            losses.append(float(step(tf.constant(x[idx]), tf.constant(y[idx]))))
            done += 1
        log(f"epoch {epoch + 1}: loss {np.mean(losses):.4f} ({time.time() - t0:.1f} s)")
        epoch += 1


def evaluate_float(net: MultiExitNet, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Top-1 of every exit of the float model."""
    logits = net.exit_logits(net.block_outputs(x))
    return [float((lg.argmax(1) == y).mean()) for lg in logits]


def _batchnorms(model) -> list:
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += _batchnorms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
    return found


def recompute_batchnorm(net: MultiExitNet, x: np.ndarray, only: list | None = None) -> int:
    """Set every BatchNorm's moving mean and variance to the statistics of ``x`` (float inputs), weights untouched;
    returns how many layers were reset.

    A brief fit leaves them near their initial 0 and 1 (momentum 0.99 moves them 1% per step), so the
    inference-mode network, the one exported, normalises with the wrong statistics and its exits can
    predict one class for every sample. One forward pass in training mode with momentum 0 makes the
    moving statistics exactly the batch's, so inference mode on ``x`` then equals training mode.

    ``only``: the blocks and exit models to reset; the others run in inference mode and keep their statistics
    bit for bit (post-trained's frozen backbone).
    """
    parts = net.blocks + [e.model for e in net.exits]
    reset = parts if only is None else [m for m in parts if any(m is o for o in only)]

    def mode(model) -> bool:  # training mode is what moves the statistics
        return any(model is r for r in reset)

    bns = [bn for m in reset for bn in _batchnorms(m)]
    saved = [bn.momentum for bn in bns]
    try:
        for bn in bns:
            bn.momentum = 0.0
        outs = []
        h = x
        for block in net.blocks:
            h = block(h, training=mode(block))
            outs.append(h)
        for e in net.exits:
            if mode(e.model):
                e.model(outs[e.after_block], training=True)
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
    return len(bns)
