"""`edgeexit run`: infer a bundle's samples block by block under an exit policy, optionally on a board."""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, Optional

import click

from edgeexit.bundle import load_bundle, read_samples
from edgeexit.cli import options
from edgeexit.cli.render import echo_json, key_values, progress, warn
from edgeexit.policies import make_policy, policy_names
from edgeexit.execute import execute
from edgeexit.paths import bundle_files, refuse_inside_board, refuse_overwriting
from edgeexit.records import RecordWriter
from edgeexit.runtime import Runtime

EPILOG = """\b
Examples:
  edgeexit run --json                                  # demo model, classic early exit, host only
  edgeexit run --board jetson-nano --simulate          # on a simulated Jetson Nano (modelled time/energy)
  edgeexit run --board jetson-nano --simulate --cpu-khz 921600 --policy full
  sudo edgeexit run --board auto --policy predictive --deadline-ms 5 --period-ms 20
  edgeexit run --model my_bundle --input samples.npz --output out/records.jsonl
"""


#: Summary lists the text output counts (their entries are in --json, and were said as warnings when they happened).
COUNTED_LISTS = ("thermal_events", "not_honoured_writes", "restore_conflicts")


@click.command("run", epilog=EPILOG)
@options.model
@click.option(
    "--input",
    "input_path",
    type=options.PathType(path_type=Path),
    default=None,
    help="An .npz with x (raw samples, the bundle's input shape and raw dtype) and optionally y (labels), or an "
    ".npy holding x alone. Default: the bundle's own held-out evaluation split.",
)
@click.option(
    "--policy",
    type=click.Choice(policy_names()),
    default="threshold",
    show_default=True,
    help="Exit policy. full: every block, final exit only. threshold: every head in order, exit at the first "
    "confident one. predictive: after the first block (or the first enabled exit's block), forecast the exit, "
    "run only the head chosen for it, skipping those before, and re-predict on a miss. pe-heuristic: Predictive "
    "Exit's public-code predictor. eenet: learned exit scores, thresholds for the accuracy target (or a budget). "
    "confidence-head: PTEENet confidence heads. oracle: earliest correct exit (needs labels; a lower bound).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Infer only the first N samples.")
@click.option(
    "--output",
    type=options.PathType(dir_okay=False, path_type=Path),
    default=None,
    help="Write one JSON record per inference to this JSONL file (flushed after each record); '-' writes them to "
    "stdout, and the summary then goes to stderr.",
)
@options.board
@options.sysfs_root
@options.simulate
@options.cpu_khz
@options.gpu_hz
@options.deadline_ms
@options.period_ms
@options.dvfs
@options.profile
@options.thermal_limit
@options.meter
@options.meter_rate
@options.interpreter
@options.threads
@options.json_output
def command(
    model_path: Optional[Path],
    input_path: Optional[Path],
    policy: str,
    limit: Optional[int],
    output: Optional[Path],
    board: Optional[str],
    sysfs_root: Optional[Path],
    simulate: bool,
    cpu_khz: Optional[str],
    gpu_hz: Optional[str],
    deadline_ms: Optional[float],
    period_ms: Optional[float],
    dvfs: str,
    profile: Optional[Path],
    thermal_limit_mc: Optional[int],
    meter: str,
    meter_rate_hz: float,
    interpreter: Optional[str],
    threads: int,
    as_json: bool,
) -> None:
    """Run a multi-exit bundle one sample at a time, one int8 segment per block, skipping the blocks
    and exit heads the policy does not need, and print a summary (accuracy, MACs, latency, energy).

    Without --board it runs on the host and reports host latency only. With --board (and --sysfs-root
    or --simulate) it opens the board, pins --cpu-khz/--gpu-hz if given, reports board latency and
    energy (measured by the board's power meter, or modelled on a simulated board), and restores the
    board's clocks afterwards, also on errors, Ctrl-C and SIGTERM.
    """
    bundle = load_bundle(model_path, calibration=policy not in ("full", "oracle"))  # those two need none
    inputs = bundle_files(bundle) + [(name, p) for name, p in (("the --input file", input_path),
                                                               ("the --profile file", profile)) if p is not None]
    refuse_overwriting([("--output", output)], inputs)  # before a sample is read or the board is touched
    refuse_inside_board([("--output", output)], sysfs_root)
    samples = read_samples(input_path, bundle.manifest.input, bundle.manifest.num_classes) if input_path else bundle.split("evaluation")
    samples = samples.take(limit)
    extra: Dict[str, Any] = {}
    if policy == "oracle":
        from edgeexit.policies.oracle import oracle_targets

        extra["targets"] = oracle_targets(bundle, samples, interpreter)
    pol = make_policy(policy, bundle, **extra)
    on_board = bool(board or sysfs_root or simulate)
    if (cpu_khz or gpu_hz or deadline_ms or period_ms or profile) and not on_board:
        raise click.UsageError("--cpu-khz/--gpu-hz/--deadline-ms/--period-ms/--profile need a board: add --board NAME "
                               "(with --simulate or --sysfs-root DIR)")
    if not on_board:  # given without a board, these were ignored without a word (their defaults are fine)
        values = {"thermal_limit_mc": thermal_limit_mc, "meter": meter, "meter_rate_hz": meter_rate_hz}
        given = ["--" + name.replace("_", "-") for name in ("thermal_limit_mc", "meter", "meter_rate_hz")
                 if options.given(name, values[name]) and not (name == "meter" and meter == "none")]  # none asks for nothing
        if given:
            raise click.UsageError("{} need{} a board: add --board NAME (with --simulate or --sysfs-root DIR), or leave "
                                   "{} out".format("/".join(given), "s" if len(given) == 1 else "",
                                                   "it" if len(given) == 1 else "them"))
    options.check_deadline(deadline_ms, period_ms)
    mode = resolve_dvfs(dvfs, pol, cpu_khz, on_board)
    if deadline_ms and dvfs == "auto" and mode == "none" and not cpu_khz:
        # --dvfs auto plans only a policy that forecasts: the deadline was otherwise left to the governor unsaid
        warn("--deadline-ms {:g} is counted, not planned for: --policy {} makes no forecast, so --dvfs auto leaves the "
             "clocks to the board's governor; pass --dvfs worst-case to plan for its worst case, or use --policy "
             "predictive".format(deadline_ms, policy))
    with ExitStack() as stack:
        # The interpreter first: one that cannot start must fail before any clock is pinned.
        rt = stack.enter_context(Runtime(bundle, interpreter=interpreter, num_threads=threads))
        session = None
        if board or sysfs_root or simulate:
            from edgeexit.dvfs import open_board

            session = stack.enter_context(open_board(board or "auto", sysfs_root, simulate, thermal_limit_mc=thermal_limit_mc))
            if session.simulated:
                options.warn_rate_ignored(meter_rate_hz, warn)
            if cpu_khz:
                extra["cpu_khz"] = session.controller.set_cpu_khz(cpu_khz)
            if gpu_hz:
                extra["gpu_hz"] = session.controller.set_gpu_hz(gpu_hz)
                if session.simulated:
                    warn("--gpu-hz is pinned, but it changes no simulated figure: the segments run on the CPU, and the "
                         "board model charges the GPU its static power at any clock")
        writer = stack.enter_context(RecordWriter(output))
        with progress(len(samples), "inferring") as update:
            ex = execute(bundle, rt, pol, samples, session=session, dvfs=mode, deadline_ms=deadline_ms,
                         period_ms=period_ms, threads=threads, profile=profile, meter=meter, meter_rate_hz=meter_rate_hz,
                         writer=writer, on_progress=update, pass_labels=policy == "oracle", warn=warn)
        summary = ex.summary
        summary.update({k: v for k, v in extra.items() if k in ("cpu_khz", "gpu_hz")})
    if session is not None:
        # filled when the session restored (after the with-block): domains someone else changed meanwhile
        summary["restore_conflicts"] = [c.describe() for c in session.restore_conflicts]
    to_err = output is not None and str(output) == "-"  # stdout carries the records: keep it pure JSONL
    if as_json:
        echo_json(summary, err=to_err)
        return
    if summary.get("simulated"):
        click.echo("SIMULATED board: latency and energy below come from the board model, not a measurement.", err=to_err)
    shown = {k: v for k, v in summary.items() if not isinstance(v, (list, dict))}
    for key in COUNTED_LISTS:  # what --json lists in full: counted here, so the text never hides that they happened
        if summary.get(key):
            shown[key] = len(summary[key])
    click.echo(key_values(shown), err=to_err)
    click.echo("exit_histogram  " + " ".join(str(c) for c in summary["exit_histogram"]), err=to_err)



def resolve_dvfs(dvfs: str, policy: Any, cpu_khz: Optional[str], on_board: bool) -> str:
    """--dvfs auto: plan with the forecast where the policy makes one, else leave the clocks alone."""
    if not on_board:
        if dvfs not in ("auto", "none"):
            raise click.UsageError("--dvfs {} needs a board: add --board NAME (with --simulate or --sysfs-root DIR)".format(dvfs))
        return "none"
    if cpu_khz and dvfs not in ("auto", "none"):
        raise click.UsageError("--cpu-khz pins one operating point; it cannot be combined with --dvfs {}".format(dvfs))
    if dvfs == "auto":
        return "planned" if (policy.forecasts and not cpu_khz) else "none"
    return dvfs


