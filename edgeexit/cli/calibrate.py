"""`edgeexit calibrate`: fit exit thresholds (and forecasters) on the bundle's held-out split."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import click

from edgeexit.bundle import CALIBRATION_FILE, NOT_CALIBRATED, calibration_write_failed, load_bundle, model_sha256
from edgeexit.bundle.data import quantize_inputs
from edgeexit.bundle.fileio import replace_target
from edgeexit.calibration import collect, target_from
from edgeexit.costmodel import SegmentLatency
from edgeexit.paths import writable_output
from edgeexit.policies.simple import METRICS
from edgeexit.policy_calibration import calibrate_all
from edgeexit.cli import options
from edgeexit.cli.render import echo_json, stages, table
from edgeexit.runtime import Runtime


@click.command("calibrate")
@options.model
@options.max_drop_pp
@options.target_accuracy
@click.option(
    "--metric",
    type=click.Choice(list(METRICS)),
    default="max_softmax",
    show_default=True,
    help="Confidence measure of the threshold policy.",
)
@click.option(
    "--eenet-budget-macs",
    type=options.FiniteFloatRange(min=0.0, min_open=True),
    default=None,
    help="Give eenet a budget instead of the accuracy target: the most accurate thresholds whose mean MACs per "
    "inference on the calibration split stay within this (calibrate also prints what samples the fit never saw "
    "spend: a k-fold estimate).",
)
@click.option(
    "--eenet-budget-ms",
    type=options.FiniteFloatRange(min=0.0, min_open=True),
    default=None,
    help="The same budget in milliseconds of segment latency per inference: counted in --latency-profile's "
    "latencies, or, without one, in latencies measured on this host now (median invoke of every segment).",
)
@click.option(
    "--latency-profile",
    type=options.PathType(dir_okay=False, path_type=Path),
    default=None,
    help="A profile from `edgeexit profile` (any board) whose segment latencies count --eenet-budget-ms.",
)
@click.option(
    "--latency-khz",
    type=click.IntRange(min=1),
    default=None,
    help="The CPU operating point of --latency-profile to count in (default: its fastest).",
)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the random parts: the cross-fit folds (out-of-fold estimates), and the forecaster's and "
              "EENet's training.")
@options.interpreter
@options.json_output
def command(
    model_path: Optional[Path],
    max_drop_pp: Optional[float],
    target_accuracy: Optional[float],
    metric: str,
    eenet_budget_macs: Optional[float],
    eenet_budget_ms: Optional[float],
    latency_profile: Optional[Path],
    latency_khz: Optional[int],
    seed: int,
    interpreter: Optional[str],
    as_json: bool,
) -> None:
    """Calibrate every exit policy on the bundle's held-out calibration split, for one accuracy target,
    and store the result in the bundle (calibration.json): per-exit thresholds (threshold), the exit
    forecaster and its acceptance thresholds (predictive), beta (pe-heuristic), score models and
    budget thresholds (eenet), and confidence-head thresholds where the bundle has such heads.
    Evaluate with `edgeexit run` / `edgeexit bench` on the separate evaluation split."""
    max_drop_pp = options.drop_pp_or_target(max_drop_pp, target_accuracy)
    if eenet_budget_macs is not None and eenet_budget_ms is not None:
        raise click.UsageError("give --eenet-budget-macs or --eenet-budget-ms, not both")
    if (latency_profile is not None or latency_khz is not None) and eenet_budget_ms is None:
        raise click.UsageError("--latency-profile and --latency-khz count --eenet-budget-ms; give that budget too")
    if latency_khz is not None and latency_profile is None:
        raise click.UsageError("--latency-khz picks a column of --latency-profile; give the profile too")
    bundle = load_bundle(model_path, calibration=False)
    # The result goes into the bundle: a read-only one (a system-wide install) fails now, not after the fit.
    # A directory, device or FIFO named calibration.json is refused here too (a FIFO would block the check below).
    cal_path = bundle.root / CALIBRATION_FILE
    writable_output(replace_target(cal_path, calibration_write_failed(cal_path)), "the calibration",
                    "--model DIR (a copy of the bundle)")
    samples = bundle.split("calibration")
    latency = None
    if latency_profile is not None:
        latency = SegmentLatency.from_profile(latency_profile, bundle, latency_khz)
    with Runtime(bundle, interpreter=interpreter) as rt:
        data = collect(rt, samples, keep_block0=True)
        target = target_from(data, max_drop_pp, target_accuracy)
        if eenet_budget_ms is not None and latency is None:
            from edgeexit.profiling import host_segment_latency  # only this case times segments

            latency = host_segment_latency(rt, quantize_inputs(samples.x[:1], bundle.manifest.input)[0])
        with stages("calibrate", lines_when_piped=False) as progress:  # stderr stays one line on an error
            entries = calibrate_all(rt, data, target, seed=seed, metric=metric, eenet_budget_macs=eenet_budget_macs,
                                    eenet_budget_ms=eenet_budget_ms, latency=latency, progress=progress)
    meta = {"split": "calibration", "n_samples": len(samples), "full_accuracy": data.full_accuracy, "target_accuracy": target,
            "model_sha256": model_sha256(bundle.manifest)}  # load_bundle refuses it for another model
    bundle.calibration = dict(entries, meta=meta)
    path = bundle.save_calibration()
    notes = entries.pop(NOT_CALIBRATED, {})  # policies left out: why, and what to do instead
    full_macs = rt.full_macs
    out = {"bundle": str(bundle.root), "calibration_file": str(path), "meta": meta,
           "policies": {k: {kk: vv for kk, vv in v.items() if kk in SUMMARY_KEYS} for k, v in entries.items()},
           NOT_CALIBRATED: notes}
    if as_json:
        echo_json(out)
        return
    click.echo("calibrated on {} held-out samples (final exit {:.2%}, target {:.2%}); wrote {}".format(
        len(samples), data.full_accuracy, target, path))
    # In-sample accuracy sits at the target by construction; the out-of-fold figure (each sample judged by a
    # fit that never saw it) is what to expect on new data.
    rows = [(name, "{:.2%}".format(e["accuracy"]), _out_of_fold(e), "{:,.0f}".format(e["mean_macs"]),
             "{:.1%}".format(1 - e["mean_macs"] / full_macs)) for name, e in entries.items()]
    click.echo(table(rows, header=["policy", "calib acc", "out-of-fold acc", "mean MACs", "MACs saved vs full"]))
    if "predictive" in entries:
        _echo_forecasters(entries["predictive"])
    ee = entries.get("eenet", {})
    if ee.get("budget_ms") is not None:
        click.echo("eenet: the most accurate thresholds within {:.4g} ms per inference: {:.4g} ms on average, in latencies {}{}".format(
            ee["budget_ms"], ee["mean_ms"], ee["latency_source"],
            _unseen(ee.get("out_of_fold_mean_ms"), ee["budget_ms"], "{:.4g} ms", ee.get("out_of_fold_k"))))
    elif ee and ee.get("target_accuracy") is None:
        click.echo("eenet: the most accurate thresholds within {:,.0f} MACs per inference{}".format(
            ee["budget_macs"], _unseen(ee.get("out_of_fold_mean_macs"), ee["budget_macs"], "{:,.0f} MACs",
                                       ee.get("out_of_fold_k"))))
    for name, why in notes.items():
        click.echo("{} not calibrated (left out of {}): {}".format(name, CALIBRATION_FILE, why))


def _unseen(spent: Optional[float], budget: float, fmt: str, k: Optional[int]) -> str:
    """What samples a fold never saw spend against the budget (fitted in-sample, the budget holds exactly)."""
    if spent is None:
        return ""
    return "; out of fold ({}-fold) {} on average, {:+.1%} against the budget".format(k, fmt.format(spent), spent / budget - 1)


def _out_of_fold(entry: Dict[str, Any]) -> str:
    # Only entries whose thresholds were cross-fitted carry out_of_fold_k; predictive's out-of-fold figure
    # judges its forecasters alone (its thresholds are the in-sample ones), so it is not shown here.
    k = entry.get("out_of_fold_k")
    return "-" if k is None else "{:.2%} ({}-fold)".format(entry["out_of_fold_accuracy"], k)


def _echo_forecasters(pe: Dict[str, Any]) -> None:
    fm = pe["forecast_metrics"]
    tree = pe.get("entry_tree")
    run_as = "a lookup table" + (" and a {}-node entry tree".format(len(tree["feature"])) if tree else "")
    click.echo("forecasters ({} params, run as {}) on {} held-out forecasts: exact hit {:.1%}, within one {:.1%}, over-prediction "
               "{:.1%} (+{:,.0f} MACs each), under-prediction {:.1%} (+{:,.0f} MACs each)".format(
                   pe["forecaster_params"], run_as, fm["n_forecasts"], fm["exact_hit_rate"], fm["within_one_rate"],
                   fm["over_prediction_rate"], fm["over_prediction_cost_macs"], fm["under_prediction_rate"], fm["under_prediction_cost_macs"]))


SUMMARY_KEYS = ("accuracy", "out_of_fold_accuracy", "out_of_fold_mean_macs", "out_of_fold_mean_ms", "out_of_fold_k", "mean_macs", "target_accuracy", "thresholds", "beta", "budget_macs", "budget_ms", "mean_ms",
                "latency_source", "forecast_metrics", "forecaster_params", "forecaster_out_of_fold_accuracy",
                "forecaster_out_of_fold_mean_macs")
