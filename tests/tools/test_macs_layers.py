"""tools/multi_exit.py counts every layer with weights exactly, or refuses it by name: a silent 0 made every MAC
saving in a manifest wrong (SeparableConv2D, Conv2DTranspose and Conv1D counted 0, grouped convs were not divided
by their groups, Dense on a rank-3 input ignored its leading axis)."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import pytest

pytestmark = pytest.mark.tools


def _one_layer(layer, shape: Tuple[int, ...]):
    import keras

    x = keras.Input(shape)
    return keras.Model(x, layer(x))


def _cases():
    import keras

    L = keras.layers
    # (layer, input shape, MACs by hand, params by hand)
    return {
        "separable": (L.SeparableConv2D(16, 3, padding="same"), (14, 14, 8),
                      14 * 14 * (9 * 8 + 8 * 16), 9 * 8 + 8 * 16 + 16),
        "grouped": (L.Conv2D(16, 3, padding="same", groups=4), (14, 14, 8), 14 * 14 * 9 * 2 * 16, 9 * 2 * 16 + 16),
        "transposed": (L.Conv2DTranspose(8, 3, strides=2, padding="same"), (7, 7, 16), 7 * 7 * 9 * 16 * 8,
                       9 * 16 * 8 + 8),
        "conv1d": (L.Conv1D(16, 3, padding="same"), (20, 8), 20 * 3 * 8 * 16, 3 * 8 * 16 + 16),
        "dense_rank3": (L.Dense(10), (5, 8), 5 * 8 * 10, 8 * 10 + 10),
        "depthwise": (L.DepthwiseConv2D(3, padding="same"), (14, 14, 8), 14 * 14 * 9 * 8, 9 * 8 + 8),
        "conv2d": (L.Conv2D(16, 3, strides=2, padding="same"), (14, 14, 8), 7 * 7 * 9 * 8 * 16, 9 * 8 * 16 + 16),
        "dense": (L.Dense(10), (72,), 72 * 10, 72 * 10 + 10),
    }


@pytest.mark.parametrize("name", ["separable", "grouped", "transposed", "conv1d", "dense_rank3", "depthwise",
                                  "conv2d", "dense"])
def test_one_layer_macs_are_exact(name: str) -> None:
    from tools.multi_exit import model_macs_params

    layer, shape, macs, params = _cases()[name]
    assert model_macs_params(_one_layer(layer, shape)) == (macs, params)


def test_the_separable_sum_is_the_auditors_figure() -> None:
    # SeparableConv2D(16, 3) on 14x14x8: 39,200 MACs (it counted 0).
    from tools.multi_exit import model_macs_params

    layer, shape, _, _ = _cases()["separable"]
    assert model_macs_params(_one_layer(layer, shape))[0] == 39_200


def test_a_layer_with_weights_it_cannot_count_is_refused_by_name() -> None:
    import keras

    from tools.multi_exit import UncountedLayer, model_macs_params

    model = _one_layer(keras.layers.LayerNormalization(name="my_norm"), (5, 8))
    with pytest.raises(UncountedLayer, match=r"layer 'my_norm' \(LayerNormalization\) has weights") as err:
        model_macs_params(model)
    assert "\n" not in str(err.value)


def test_layers_without_weights_count_nothing() -> None:
    import keras

    x = keras.Input((8, 8, 4))
    h = keras.layers.MaxPooling2D(2)(keras.layers.ReLU()(x))
    from tools.multi_exit import model_macs_params

    assert model_macs_params(keras.Model(x, keras.layers.Flatten()(h))) == (0, 0)


def test_export_refuses_an_uncountable_segment_before_converting(tmp_path: Path, tiny_splits) -> None:
    import keras

    from tools.export import ExportRefused, export_bundle
    from tools.multi_exit import ExitHead, MultiExitNet

    x = keras.Input((28, 28, 1))
    block = keras.Model(x, keras.layers.LayerNormalization(name="ln")(keras.layers.Conv2D(2, 3, strides=4)(x)))
    hx = keras.Input(tuple(int(d) for d in block.output.shape[1:]))
    head = keras.Model(hx, keras.layers.Dense(10)(keras.layers.Flatten()(hx)))
    net = MultiExitNet([block], [ExitHead(head, 0)], (28, 28, 1), 10)
    with pytest.raises(ExportRefused, match=r"layer 'ln' \(LayerNormalization\)"):
        export_bundle(net, tmp_path / "b", splits=tiny_splits, name="x", training={}, verbose=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("after", [[0, 0], [1, 0]])
def test_two_exits_after_one_block_are_refused(after) -> None:
    """The loader requires strictly increasing after_block: such a net exported fine and then never loaded."""
    from tools.multi_exit import ExitHead, MultiExitNet, conv_block, pooled_dense_head

    b0 = conv_block((28, 28, 1), 4, 4, "dup_b0")
    shape = tuple(int(d) for d in b0.output.shape[1:])
    b1 = conv_block(shape, 4, 1, "dup_b1")
    heads = [ExitHead(pooled_dense_head(shape, 10, f"dup_e{i}"), a) for i, a in enumerate(after)]
    heads.append(ExitHead(pooled_dense_head(shape, 10, "dup_final"), 1))
    with pytest.raises(ValueError, match="at most one exit"):
        MultiExitNet([b0, b1], heads, (28, 28, 1), 10)
