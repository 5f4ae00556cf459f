"""`edgeexit calibrate`: fit exit thresholds (and forecasters) on the bundle's held-out split."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from edgeexit.bundle import load_bundle
from edgeexit.calibration import collect, target_from
from edgeexit.policy_calibration import calibrate_all
from edgeexit.cli import options
from edgeexit.cli.render import echo_json, table
from edgeexit.runtime import Runtime


@click.command("calibrate")
@options.model
@click.option(
    "--max-drop-pp",
    type=click.FloatRange(min=0.0),
    default=0.25,
    show_default=True,
    help="Accuracy target relative to the final exit on the calibration split, in percentage points "
    "(0.25 leaves headroom so held-out evaluation stays within 0.5 pp of `full`).",
)
@click.option(
    "--target-accuracy",
    type=click.FloatRange(min=0.0, max=1.0),
    default=None,
    help="Absolute accuracy target in [0, 1] instead of --max-drop-pp.",
)
@click.option(
    "--metric",
    type=click.Choice(["max_softmax", "entropy"]),
    default="max_softmax",
    show_default=True,
    help="Confidence measure of the threshold policy.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the forecaster's training and hold-out split.")
@options.interpreter
@options.json_output
def command(
    model_path: Optional[Path],
    max_drop_pp: float,
    target_accuracy: Optional[float],
    metric: str,
    seed: int,
    interpreter: Optional[str],
    as_json: bool,
) -> None:
    """Calibrate every exit policy on the bundle's held-out calibration split, for one accuracy target,
    and store the result in the bundle (calibration.json): per-exit thresholds (threshold), the exit
    forecaster and its acceptance thresholds (predictive), beta (pe-heuristic), score models and
    budget thresholds (eenet), and confidence-head thresholds where the bundle has such heads.
    Evaluate with `edgeexit run` / `edgeexit bench` on the separate evaluation split."""
    bundle = load_bundle(model_path)
    samples = bundle.split("calibration")
    with Runtime(bundle, interpreter=interpreter) as rt:
        data = collect(rt, samples, keep_block0=True)
        target = target_from(data, max_drop_pp, target_accuracy)
        entries = calibrate_all(rt, data, target, seed=seed, metric=metric)
    meta = {"split": "calibration", "n_samples": len(samples), "full_accuracy": data.full_accuracy, "target_accuracy": target}
    bundle.calibration = dict(entries, meta=meta)
    path = bundle.save_calibration()
    full_macs = rt.full_macs
    out = {"bundle": str(bundle.root), "calibration_file": str(path), "meta": meta,
           "policies": {k: {kk: vv for kk, vv in v.items() if kk in SUMMARY_KEYS} for k, v in entries.items()}}
    if as_json:
        echo_json(out)
        return
    click.echo("calibrated on {} held-out samples (final exit {:.2%}, target {:.2%}); wrote {}".format(
        len(samples), data.full_accuracy, target, path))
    rows = [(name, "{:.2%}".format(e["accuracy"]), "{:.0f}".format(e["mean_macs"]), "{:.1%}".format(1 - e["mean_macs"] / full_macs))
            for name, e in entries.items()]
    click.echo(table(rows, header=["policy", "calib acc", "mean MACs", "MACs saved vs full"]))
    pe = entries["predictive"]
    fm = pe["forecast_metrics"]
    tree = pe.get("entry_tree")
    run_as = "a lookup table" + (" and a {}-node entry tree".format(len(tree["feature"])) if tree else "")
    click.echo("forecasters ({} params, run as {}) on {} held-out forecasts: exact hit {:.1%}, within one {:.1%}, over-prediction "
               "{:.1%} (+{:.0f} MACs each), under-prediction {:.1%} (+{:.0f} MACs each)".format(
                   pe["forecaster_params"], run_as, fm["n_forecasts"], fm["exact_hit_rate"], fm["within_one_rate"],
                   fm["over_prediction_rate"], fm["over_prediction_cost_macs"], fm["under_prediction_rate"], fm["under_prediction_cost_macs"]))


SUMMARY_KEYS = ("accuracy", "mean_macs", "target_accuracy", "thresholds", "beta", "budget_macs", "forecast_metrics", "forecaster_params")
