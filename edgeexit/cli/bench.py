"""`edgeexit bench`: every policy side by side on one board, with the paper's claims next to ours."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import click

from edgeexit.bench.core import POLICY_NAMES, BenchConfig, check_policies, run_bench
from edgeexit.bench.plots import have_matplotlib, write_plots
from edgeexit.bench.report import render
from edgeexit.bundle import load_bundle
from edgeexit.bundle.fileio import replace_file, replace_target
from edgeexit.cli import options
from edgeexit.cli.render import echo_json, stages, warn
from edgeexit.errors import OutputError
from edgeexit.paths import refuse_inside_board, writable_output

EPILOG = """\b
Examples:
  edgeexit bench --board jetson-nano --simulate --out bench-out/nano
  edgeexit bench --board raspberry-pi-5 --simulate --period-ms 20 --out bench-out/pi5 --json
  sudo edgeexit bench --board auto --out bench-out/real      # on a real board: restores its clocks after
"""


#: Every file bench writes into --out.
OUTPUT_FILES = ("results.json", "report.md", "pareto.png", "exit_histogram.png", "timeline.png")


def _cannot_write(path: Path) -> Callable[[str], OutputError]:
    return lambda why: OutputError("cannot write {} ({}); pass --out DIR naming a directory where edgeexit may "
                                   "write its results".format(path, why))


def summary_of(res: dict) -> dict:
    keys = ("accuracy", "mean_macs", "macs_reduction_vs_full", "mean_latency_ms", "p99_latency_ms", "deadline_miss_rate",
            "mean_energy_mj", "mean_energy_period_mj", "energy_known", "sysfs_writes_per_inference",
            "period_overrun_rate", "mean_period_actual_ms")  # an overrun arm's energy per period covers longer periods
    return {
        "simulated": res["simulated"], "board": res["board"], "model": res["model"], "deadline_ms": res["deadline_ms"],
        "period_ms": res["period_ms"], "target_accuracy": res["target_accuracy"], "n_samples": res["n_samples"],
        "arms": {a: {k: s.get(k) for k in keys} for a, s in res["arms"].items()},
        "predictive_vs": res["derived"].get("predictive@planned", {}),
    }


@click.command("bench", epilog=EPILOG)
@options.board
@options.sysfs_root
@options.simulate
@options.model
@options.bench_deadline_ms
@options.bench_period_ms
@click.option("--policies", metavar="LIST", default=None,
              help="Comma-separated policies to compare, from: {}; full and threshold always run (they are the "
              "references). Default: all of them, confidence-head only where the bundle has confidence heads (named "
              "here, it must have them).".format(", ".join(POLICY_NAMES)))
@options.target_accuracy
@options.max_drop_pp
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the calibration's random parts: the cross-fit folds, the forecaster's and EENet's training, "
              "and the accuracy sweep's refits (all else is deterministic).")
@click.option("--limit", type=click.IntRange(min=10), default=None, help="Use only the first N evaluation samples.")
@click.option("--no-sweep", is_flag=True, help="Skip the accuracy-vs-energy sweep (Pareto plot).")
@click.option("--no-sensitivity", is_flag=True, help="Skip the +-50% power-model sensitivity runs (simulated boards).")
@click.option("--out", "out_dir", type=options.PathType(file_okay=False, path_type=Path), required=True,
              help="Directory for results.json, report.md and the PNG plots.")
@options.meter
@options.interpreter
@options.threads
@options.json_output
def command(board: Optional[str], sysfs_root: Optional[Path], simulate: bool, model_path: Optional[Path], deadline_ms: Optional[float],
            period_ms: Optional[float], policies: Optional[str], target_accuracy: Optional[float], max_drop_pp: Optional[float], seed: int,
            limit: Optional[int], no_sweep: bool, no_sensitivity: bool, out_dir: Path, meter: str, interpreter: Optional[str],
            threads: int, as_json: bool) -> None:
    """Run every exit policy on the same held-out samples under the same deadline and period, each
    calibrated to the same accuracy target, on a real or simulated board; write results.json,
    report.md and PNG plots to --out, and restore the board afterwards. The exit code is non-zero only
    on errors, never because a result is poor."""
    if not (board or sysfs_root or simulate):
        raise click.UsageError("bench needs a board: --board NAME with --simulate or --sysfs-root DIR (or a real board as root)")
    options.check_deadline(deadline_ms, period_ms)
    max_drop_pp = options.drop_pp_or_target(max_drop_pp, target_accuracy)
    wanted = None  # the default list, which leaves confidence-head out quietly on a bundle without its heads
    if policies is not None:
        wanted = [p.strip() for p in policies.split(",") if p.strip()]
        if not wanted:
            raise click.UsageError("--policies names no policy; give a comma-separated list such as threshold,predictive")
        unknown = [p for p in wanted if p not in POLICY_NAMES]
        if unknown:
            raise click.UsageError("unknown policies {}; choose from {}".format(", ".join(unknown), ", ".join(POLICY_NAMES)))
    bundle = load_bundle(model_path, calibration=False)  # the bench calibrates every policy itself
    check_policies(bundle, wanted)  # a bundle that cannot run a named arm: before --out is made
    cfg = BenchConfig(board=board or "auto", out_dir=out_dir, sysfs_root=sysfs_root, simulate=simulate, model_path=model_path,
                      deadline_ms=deadline_ms, period_ms=period_ms, policies=wanted, max_drop_pp=max_drop_pp,
                      target_accuracy=target_accuracy, seed=seed, limit=limit, threads=threads, interpreter=interpreter,
                      sweep=not no_sweep, sensitivity=False if no_sensitivity else None, meter=meter, bundle=bundle)
    refuse_inside_board([("--out", out_dir)], sysfs_root)
    writable_output(out_dir, "the benchmark", "--out DIR", directory=True)  # before minutes of work, not after
    for name in OUTPUT_FILES:  # a directory, device or FIFO in the way would fail (or block) only at the end
        replace_target(out_dir / name, _cannot_write(out_dir / name))
    with stages("bench") as progress:
        res = run_bench(cfg, progress=progress, warn=warn)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    if have_matplotlib():
        plots = write_plots(res, out_dir)
    else:
        click.echo("edgeexit: warning: matplotlib is not installed, so no PNG plots were written "
                   "(pip install matplotlib, the [plot] extra); results.json and report.md are complete.", err=True)
    res["plots"] = plots
    # atomic, as every other file edgeexit writes: a reader (or a crash) never sees half a report
    replace_file(out_dir / "results.json", json.dumps(res, indent=2, sort_keys=True) + "\n", _cannot_write(out_dir / "results.json"))
    replace_file(out_dir / "report.md", render(res, plots), _cannot_write(out_dir / "report.md"))
    if as_json:
        echo_json(summary_of(res))
        return
    if res["simulated"]:
        click.echo("SIMULATED board: latency and energy come from the board model.")
    click.echo("wrote {}, {} and {} plot(s) to {}".format("results.json", "report.md", len(plots), out_dir))
    click.echo(headline(res["derived"], res.get("not_calibrated", {})))


def _saving(value: Optional[float], less: str, more: str) -> str:
    if value is None:
        return "unknown"
    return "{:.1%} {}".format(abs(value), less if value >= 0 else more)


def headline(derived: dict, not_calibrated: Optional[dict] = None) -> str:
    """predictive@planned against threshold@race in one line; never a figure for an arm that did not run."""
    d = derived.get("predictive@planned")
    if not d:
        why = "its calibration failed, see the warning" if "predictive" in (not_calibrated or {}) else "not in --policies"
        return "predictive did not run ({}): report.md compares the arms that did".format(why)
    return "predictive vs threshold@race: MACs {}, energy/inference {}, energy/period {}".format(
        _saving(d.get("macs_saving_vs_threshold_at_race"), "fewer", "more"),
        _saving(d.get("energy_saving_vs_threshold_at_race"), "lower", "higher"),
        _saving(d.get("energy_period_saving_vs_threshold_at_race"), "lower", "higher"))
