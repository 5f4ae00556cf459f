"""A multi-exit network as the exporter sees it: an ordered list of blocks plus exit heads.

Every block and every head is its own ``keras.Model`` (input tensor -> output tensor), so the
same layer objects are trained inside the composed network and converted one segment at a time
(the export recipe in litert-joulescope-psutil.md section 2).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np


@dataclass
class ExitHead:
    """One exit: a head model fed by the output of block ``after_block``.

    ``model`` maps the block output to logits ``[N, C]`` or, for a PTEENet head, to
    ``[logits, confidence]`` with confidence ``[N, 1]`` in (0, 1).
    """

    model: keras.Model
    after_block: int
    has_confidence: bool = False


@dataclass
class MultiExitNet:
    """Blocks run in order; exits are sorted by ``after_block``; the last block has an exit."""

    blocks: list[keras.Model]
    exits: list[ExitHead]
    input_shape: tuple[int, ...]  # one sample, no batch axis (H, W, C)
    num_classes: int
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        after = [e.after_block for e in self.exits]
        if after != sorted(after):
            raise ValueError("exits must be in block order")
        if not self.exits or after[-1] != len(self.blocks) - 1:
            raise ValueError("the last block needs an exit (the final exit)")

    def block_outputs(self, x: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
        """Float outputs of every block for a float input batch (inference mode)."""
        outs: list[list[np.ndarray]] = [[] for _ in self.blocks]
        for i in range(0, len(x), batch_size):
            h = x[i : i + batch_size]
            for k, block in enumerate(self.blocks):
                h = block(h, training=False)
                outs[k].append(np.asarray(h))
        return [np.concatenate(o) for o in outs]

    def exit_logits(self, block_outs: list[np.ndarray], batch_size: int = 512) -> list[np.ndarray]:
        """Float logits of every exit given :meth:`block_outputs`."""
        res = []
        for e in self.exits:
            h = block_outs[e.after_block]
            parts = []
            for i in range(0, len(h), batch_size):
                out = e.model(h[i : i + batch_size], training=False)
                parts.append(np.asarray(out[0] if e.has_confidence else out))
            res.append(np.concatenate(parts))
        return res


# --- analytic cost ------------------------------------------------------------------------------
def _shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape[1:])


def layer_macs_params(layer: keras.layers.Layer) -> tuple[int, int]:
    """Multiply-accumulates and deployed parameters of one layer (batch 1).

    Convolutions and dense layers count k*k*Cin*Cout per output pixel; BatchNorm is folded
    into the preceding convolution by the converter (0 MACs, its shift becomes the conv bias);
    average pooling counts one MAC per window element; elementwise ops (ReLU, Add) count 0.
    """
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = _shape(layer.output)
        kh, kw = layer.kernel_size
        cin = _shape(layer.input)[-1]
        mult = layer.depth_multiplier
        macs = out[0] * out[1] * kh * kw * cin * mult
        return macs, kh * kw * cin * mult + cin * mult
    if isinstance(layer, keras.layers.Conv2D):
        out = _shape(layer.output)
        kh, kw = layer.kernel_size
        cin = _shape(layer.input)[-1]
        cout = layer.filters
        macs = out[0] * out[1] * kh * kw * cin * cout
        return macs, kh * kw * cin * cout + cout  # bias or folded BN shift
    if isinstance(layer, keras.layers.Dense):
        cin = _shape(layer.input)[-1]
        return cin * layer.units, cin * layer.units + layer.units
    if isinstance(layer, (keras.layers.AveragePooling2D,)):
        out = _shape(layer.output)
        ph, pw = layer.pool_size
        return out[0] * out[1] * out[2] * ph * pw, 0
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        inp = _shape(layer.input)
        return inp[0] * inp[1] * inp[2], 0
    if isinstance(layer, keras.Model):
        return model_macs_params(layer)
    return 0, 0


def model_macs_params(model: keras.Model) -> tuple[int, int]:
    """Sum of :func:`layer_macs_params` over a segment model."""
    macs = params = 0
    for layer in model.layers:
        m, p = layer_macs_params(layer)
        macs += m
        params += p
    return macs, params


# --- building blocks ----------------------------------------------------------------------------
def conv_block(
    input_shape: tuple[int, ...], filters: int, stride: int, name: str, kernel: int = 3
) -> keras.Model:
    """conv3x3 (no bias) + BatchNorm + ReLU: one conv stage = one block."""
    x = keras.Input(input_shape, name=f"{name}_in")
    h = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    h = keras.layers.BatchNormalization(name=f"{name}_bn")(h)
    h = keras.layers.ReLU(name=f"{name}_relu")(h)
    return keras.Model(x, h, name=name)


def pooled_dense_head(
    input_shape: tuple[int, ...], num_classes: int, name: str, grid: int = 4
) -> keras.Model:
    """Average-pool to about ``grid`` x ``grid`` (keeps coarse spatial layout), flatten, dense.

    A bare global average pool on a few channels throws away where strokes are; a 4x4 grid keeps
    early exits useful at negligible cost.
    """
    x = keras.Input(input_shape, name=f"{name}_in")
    pool = max(1, round(input_shape[0] / grid))
    h = x
    if pool > 1:
        h = keras.layers.AveragePooling2D(pool, strides=pool, name=f"{name}_pool")(h)
    h = keras.layers.Flatten(name=f"{name}_flat")(h)
    logits = keras.layers.Dense(num_classes, name=f"{name}_logits")(h)
    return keras.Model(x, logits, name=name)


def conv_confidence_head(
    input_shape: tuple[int, ...], num_classes: int, name: str, filters: int = 16, grid: int = 4,
    conv_grid: int = 8,
) -> keras.Model:
    """PTEENet's conv branch: conv3x3+BN+ReLU, pool, flatten, then logits and a sigmoid confidence.

    The input is first average-pooled to about ``conv_grid`` x ``conv_grid`` so a branch on an
    early, high-resolution block does not cost more than the blocks it lets a sample skip.
    """
    x = keras.Input(input_shape, name=f"{name}_in")
    h = x
    pre = max(1, round(input_shape[0] / conv_grid))
    if pre > 1:
        h = keras.layers.AveragePooling2D(pre, strides=pre, name=f"{name}_prepool")(h)
    h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(h)
    h = keras.layers.BatchNormalization(name=f"{name}_bn")(h)
    h = keras.layers.ReLU(name=f"{name}_relu")(h)
    pool = max(1, round(int(h.shape[1]) / grid))
    if pool > 1:
        h = keras.layers.AveragePooling2D(pool, strides=pool, name=f"{name}_pool")(h)
    h = keras.layers.Flatten(name=f"{name}_flat")(h)
    logits = keras.layers.Dense(num_classes, name=f"{name}_logits")(h)
    conf = keras.layers.Dense(1, activation="sigmoid", name=f"{name}_confidence")(h)
    return keras.Model(x, [logits, conf], name=name)
