"""`edgeexit calibrate`: fit exit thresholds (and forecasters) on the bundle's held-out split."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from edgeexit.bundle import load_bundle
from edgeexit.calibration import calibrate_threshold, collect, target_from
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
@options.interpreter
@options.json_output
def command(
    model_path: Optional[Path],
    max_drop_pp: float,
    target_accuracy: Optional[float],
    metric: str,
    interpreter: Optional[str],
    as_json: bool,
) -> None:
    """Calibrate the bundle's exit policies on its held-out calibration split and store the result in
    the bundle (calibration.json). Evaluate with `edgeexit run` on the separate evaluation split."""
    bundle = load_bundle(model_path)
    samples = bundle.split("calibration")
    with Runtime(bundle, interpreter=interpreter) as rt:
        data = collect(rt, samples, keep_block0=True)
    target = target_from(data, max_drop_pp, target_accuracy)
    fit = calibrate_threshold(data, target, metric)
    bundle.calibration["threshold"] = dict(fit.to_dict(), split="calibration", n_samples=len(samples))
    path = bundle.save_calibration()
    out = {"bundle": str(bundle.root), "calibration_file": str(path), "threshold": fit.to_dict()}
    if as_json:
        echo_json(out)
        return
    click.echo("calibrated on {} held-out samples; wrote {}".format(len(samples), path))
    click.echo(
        table(
            [("threshold", "{:.2%}".format(fit.target_accuracy), "{:.2%}".format(fit.accuracy), "{:.0f}".format(fit.mean_macs),
              "{:.1%}".format(1 - fit.mean_macs / fit.full_macs))],
            header=["policy", "target acc", "calib acc", "mean MACs", "MACs saved vs full"],
        )
    )
