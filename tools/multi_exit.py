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
        for i, a in enumerate(after):
            if not 0 <= a < len(self.blocks):
                raise ValueError(f"exit {i} sits after block {a}, but the blocks are 0..{len(self.blocks) - 1}")
        for i in range(1, len(after)):
            # The bundle loader requires strictly increasing after_block (docs/bundle-format.md): a
            # second exit after the same block would export fine and then never load.
            if after[i] <= after[i - 1]:
                where = (f"both sit after block {after[i]}" if after[i] == after[i - 1]
                         else f"sit after blocks {after[i - 1]} and {after[i]}, out of block order")
                raise ValueError(f"exits {i - 1} and {i} {where}; give each block at most one exit, listed in "
                                 "block order (after_block strictly increasing)")
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
class UncountedLayer(ValueError):
    """A layer with weights whose MACs :func:`layer_macs_params` cannot count: a silent 0 would make every
    MAC saving in the manifest and the runtime's reports wrong."""


def _shape(t) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape[1:])


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def _conv_layers() -> tuple[tuple, tuple, tuple, tuple, tuple, tuple]:
    """(depthwise, separable, transposed, plain conv, average pool, global average pool) layer classes.
    Siblings in Keras 3 (SeparableConv2D is no Conv2D), so each kind is named explicitly."""
    L = keras.layers

    def have(*names: str) -> tuple:
        return tuple(getattr(L, n) for n in names if hasattr(L, n))

    return (have("DepthwiseConv1D", "DepthwiseConv2D"), have("SeparableConv1D", "SeparableConv2D"),
            have("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"), have("Conv1D", "Conv2D", "Conv3D"),
            have("AveragePooling1D", "AveragePooling2D", "AveragePooling3D"),
            have("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D"))


#: Layers with weights that cost no MACs once converted: BatchNorm folds into the preceding convolution.
_FOLDED = (keras.layers.BatchNormalization,)


def layer_macs_params(layer: keras.layers.Layer) -> tuple[int, int]:
    """Multiply-accumulates and deployed parameters of one layer (batch 1).

    Convolutions count k*Cin*Cout per output position (k: kernel elements; Cin/groups for grouped
    ones); depthwise ones k*Cin*multiplier; separable ones their depthwise plus their 1x1 pointwise
    part; transposed ones k*Cin*Cout per *input* position (each scatters into the output); dense
    layers Cin*units per position of the leading axes. BatchNorm is folded into the preceding
    convolution by the converter (0 MACs, its shift becomes the conv bias); average pooling counts
    one MAC per window element; elementwise ops (ReLU, Add) count 0. Any other layer with weights
    raises :class:`UncountedLayer` rather than counting 0.
    """
    depthwise, separable, transposed, conv, avg_pool, global_avg = _conv_layers()
    if isinstance(layer, keras.Model):
        return model_macs_params(layer)
    if isinstance(layer, depthwise):
        k = _prod(layer.kernel_size)
        cin = _shape(layer.input)[-1]
        mult = layer.depth_multiplier
        macs = _prod(_shape(layer.output)[:-1]) * k * cin * mult
        return macs, k * cin * mult + cin * mult
    if isinstance(layer, separable):
        k = _prod(layer.kernel_size)
        cin = _shape(layer.input)[-1]
        mid = cin * layer.depth_multiplier
        cout = layer.filters
        positions = _prod(_shape(layer.output)[:-1])
        macs = positions * k * mid + positions * mid * cout  # depthwise, then pointwise 1x1
        return macs, k * mid + mid * cout + cout
    if isinstance(layer, transposed):
        k = _prod(layer.kernel_size)
        cin = _shape(layer.input)[-1]
        cout = layer.filters
        return _prod(_shape(layer.input)[:-1]) * k * cin * cout, k * cin * cout + cout
    if isinstance(layer, conv):
        k = _prod(layer.kernel_size)
        cin = _shape(layer.input)[-1] // getattr(layer, "groups", 1)  # each filter sees its group's channels
        cout = layer.filters
        macs = _prod(_shape(layer.output)[:-1]) * k * cin * cout
        return macs, k * cin * cout + cout  # bias or folded BN shift
    if isinstance(layer, keras.layers.Dense):
        shape = _shape(layer.input)
        cin = shape[-1]
        return _prod(shape[:-1]) * cin * layer.units, cin * layer.units + layer.units
    if isinstance(layer, avg_pool):
        return _prod(_shape(layer.output)) * _prod(layer.pool_size), 0
    if isinstance(layer, global_avg):
        return _prod(_shape(layer.input)), 0
    if isinstance(layer, _FOLDED) or not layer.weights:
        return 0, 0
    raise UncountedLayer(
        f"layer {layer.name!r} ({type(layer).__name__}) has weights but tools/multi_exit.py:layer_macs_params "
        "cannot count its MACs; add a case for it there, or build the segment from layers it counts (Conv1D/2D/3D "
        "incl. grouped, DepthwiseConv1D/2D, SeparableConv1D/2D, ConvNDTranspose, Dense, BatchNormalization)")


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
