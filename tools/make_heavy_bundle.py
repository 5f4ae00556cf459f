"""Make a compute-heavier bundle (ResNet-like, 32x32x3, ~87 MMACs) plus one monolithic int8 .tflite.

    python -m tools.make_heavy_bundle --out DIR [--seed 0] [--steps 30]

DIR becomes a bundle (manifest.json, blockK.tflite, exitK.tflite, calib.npz, eval.npz) and also
holds ``monolithic.tflite``: the same full network (input -> final logits) as a single int8
model, calibrated on the same images, for segmented-vs-monolithic latency benchmarks. The
manifest's ``training.monolithic`` names it with its sha256. Weights are briefly fitted on a
synthetic 10-class task (class templates plus noise of random severity per sample), then every
BatchNorm's statistics are recomputed on the training images, so the exits really classify (a
30-step fit left the final exit predicting one class) and samples need different depths: the
exporter's agreement check and ``edgeexit calibrate`` then mean something. Timing is the point.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tools.argtypes import float_range, int_range


def residual_block(input_shape, filters: int, stride: int, name: str):
    import keras

    x = keras.Input(input_shape, name=f"{name}_in")
    h = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv1")(x)
    h = keras.layers.BatchNormalization(name=f"{name}_bn1")(h)
    h = keras.layers.ReLU(name=f"{name}_relu1")(h)
    h = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(h)
    h = keras.layers.BatchNormalization(name=f"{name}_bn2")(h)
    sc = x
    if stride != 1 or input_shape[-1] != filters:
        sc = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        sc = keras.layers.BatchNormalization(name=f"{name}_bnp")(sc)
    h = keras.layers.Add(name=f"{name}_add")([h, sc])
    h = keras.layers.ReLU(name=f"{name}_relu2")(h)
    return keras.Model(x, h, name=name)


# (filters, stride) per residual block after a 3->32 stem.
HEAVY_STAGES = [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1)]


def build_heavy_net(input_shape=(32, 32, 3), num_classes: int = 10):
    from tools.multi_exit import ExitHead, MultiExitNet, conv_block, pooled_dense_head

    blocks = [conv_block(input_shape, 32, 1, name="stem")]
    shape = tuple(int(d) for d in blocks[0].output.shape[1:])
    for k, (filters, stride) in enumerate(HEAVY_STAGES):
        blk = residual_block(shape, filters, stride, name=f"res{k}")
        shape = tuple(int(d) for d in blk.output.shape[1:])
        blocks.append(blk)
    exits = []
    for k, blk in enumerate(blocks):
        shape = tuple(int(d) for d in blk.output.shape[1:])
        exits.append(ExitHead(pooled_dense_head(shape, num_classes, name=f"exit{k}"), k))
    return MultiExitNet(blocks, exits, tuple(input_shape), num_classes)


def monolithic_model(net):
    """Input -> every block -> final exit head, reusing the same layer objects."""
    import keras

    x = keras.Input(net.input_shape, name="input")
    h = x
    for block in net.blocks:
        h = block(h)
    return keras.Model(x, net.exits[-1].model(h), name="monolithic")


#: Std of the template-scale noise at full severity, in units of the templates' std. Pixel noise alone averages
#: out in any pooled head, so every exit was 100% accurate and every sample left at exit 0; this noise does not,
#: and at random severity per sample the exits spread (float accuracy grows from about 70% to 85% with depth).
COARSE_NOISE = 3.0


def synthetic_splits(seed: int, n_train: int = 512, n_calib: int = 200, n_eval: int = 200):
    """10 classes of smooth random colour templates plus noise, as uint8 32x32x3 images: pixel noise, and noise
    at the templates' own 8x8-pixel scale of severity s ~ U(0, 1) per sample, so difficulty varies."""
    from tools.data import DataSplits, Split

    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(10, 4, 4, 3))
    templates = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)

    def upsample(a):
        return np.repeat(np.repeat(a, 8, axis=1), 8, axis=2)

    def make(n):
        y = np.arange(n) % 10
        rng.shuffle(y)
        severity = rng.uniform(size=(n, 1, 1, 1))
        confusion = upsample(rng.normal(size=(n, 4, 4, 3))) * (COARSE_NOISE * severity)
        x = 128 + 45 * (templates[y] + confusion) + rng.normal(scale=30, size=(n, 32, 32, 3))
        return Split(np.clip(np.round(x), 0, 255).astype(np.uint8), y.astype(np.int64))

    return DataSplits(make(n_train), make(n_calib), make(n_eval),
                      dataset="synthetic colour templates (timing only)",
                      preprocessing_scale=1.0 / 255.0, preprocessing_offset=0.0)


def build_parser() -> argparse.ArgumentParser:
    """Every number is range-checked here, so a nonsense one is an argparse error before any training."""
    ap = argparse.ArgumentParser(prog="python -m tools.make_heavy_bundle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for the bundle and monolithic.tflite")
    ap.add_argument("--seed", type=int_range(0, 2 ** 32 - 1), default=0, help="seed for data and weights")
    ap.add_argument("--steps", type=int_range(1), default=30, help="training steps of the brief fit")
    ap.add_argument("--min-agreement", type=float_range(0.0, 1.0), default=0.9,
                    help="int8/float top-1 agreement the exporter demands per exit")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tools.bundle_dir import exit_if_bad_out_dir, require_tools_extra

    exit_if_bad_out_dir(args.out)  # now, not after training
    require_tools_extra()

    from tools.training import seed_everything

    seed_everything(args.seed)
    from tools.export import ExportRefused, convert_int8, export_bundle, sha256_file
    from tools.multi_exit import model_macs_params
    from tools.strategies import joint_loss
    from tools.training import exit_weights, recompute_batchnorm, train_loop

    splits = synthetic_splits(args.seed)
    net = build_heavy_net()
    macs = [model_macs_params(b)[0] for b in net.blocks]
    print(f"blocks MACs {macs} (total {sum(macs) / 1e6:.1f} M)")
    variables = [v for m in net.blocks + [e.model for e in net.exits] for v in m.trainable_variables]
    train_loop(net, joint_loss(exit_weights("uniform", len(net.exits))), variables,
               splits.to_float(splits.train.x), splits.train.y, epochs=1, steps=args.steps,
               batch_size=32, seed=args.seed)
    # The brief fit barely moves BatchNorm's moving statistics (momentum 0.99): the exported, inference-mode
    # exits then predicted one class for every sample, so the agreement check and calibration were vacuous.
    recompute_batchnorm(net, splits.to_float(splits.train.x))
    try:
        manifest = export_bundle(
            net, args.out, splits=splits, name="heavy-resnet-32x32", min_agreement=args.min_agreement,
            training={"seed": args.seed, "strategy": "joint", "script": "tools/make_heavy_bundle.py",
                      "steps": args.steps, "purpose": "latency benchmarks; accuracy meaningless"})
    except ExportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    mono = out / "monolithic.tflite"
    mono.write_bytes(convert_int8(monolithic_model(net), splits.to_float(splits.calibration.x)))
    manifest["training"]["monolithic"] = {"file": mono.name, "sha256": sha256_file(mono),
                                          "macs": int(sum(macs) + manifest["exits"][-1]["macs"])}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"bundle: {out}  monolithic: {mono}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
