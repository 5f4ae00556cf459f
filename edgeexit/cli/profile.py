"""`edgeexit profile`: latency (and energy) of every block and exit head at every CPU operating point."""
from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Dict, Optional

import click

from edgeexit.bundle import load_bundle
from edgeexit.bundle.fileio import replace_target
from edgeexit.cli import options
from edgeexit.cli.render import echo_json, progress, table, warn
from edgeexit.paths import bundle_files, refuse_inside_board, refuse_overwriting, writable_output
from edgeexit.profiling import COOL_MAX_C
from edgeexit.runtime import Runtime

EPILOG = """\b
Examples:
  edgeexit profile --board jetson-nano --simulate --threads 4      # the board model, labelled SIMULATED
  edgeexit profile --board raspberry-pi-5 --simulate --out /tmp/pi5.json --json
  edgeexit profile --board jetson-nano --simulate --plot nano-profile.png   # energy vs clock, as a PNG
  sudo edgeexit profile --board auto --repeats 20 --passes 4       # a real board, its own power meter
  sudo edgeexit profile --board auto --cool-below-c 45             # each pass starts at <= 45 °C
  edgeexit run --board jetson-nano --simulate --threads 4 --profile PROFILE.json
"""


@click.command("profile", epilog=EPILOG)
@options.board
@options.sysfs_root
@options.simulate
@options.model
@click.option(
    "--out",
    type=options.PathType(dir_okay=False, path_type=Path),
    default=None,
    help="Profile file to write. Default: profiles/<board>[-simulated][-<N>threads].json inside the bundle "
    "(-<N>threads only for --threads N above 1), where `edgeexit run` looks for it.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Timed invokes per segment and operating point on a real board (the median is kept). A simulated "
    "board's model needs one.",
)
@click.option(
    "--passes",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Sweeps over the operating points on a real board, ascending, then descending, and so on, so that "
    "the board warming up biases neither end of the table. Latency is the median over all passes, energy and "
    "power the mean; the profile records how much each point's latency differed between passes and the "
    "hottest thermal zone. A simulated board's model needs one.",
)
@click.option(
    "--cool-below-c",
    type=options.FiniteFloatRange(min=0, max=COOL_MAX_C, min_open=True, max_open=True),
    default=None,
    help="On a real board, begin each pass only once the hottest thermal zone (PMIC zones left out) reads at "
    "most this many °C, waiting at the lowest CPU clock, so that no pass starts hot from earlier work. The "
    "profile records what each pass began at. Default: no wait. A simulated board has no temperature.",
)
@click.option(
    "--cool-timeout-s",
    type=options.FiniteFloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Give up with an error when a --cool-below-c wait lasts longer than this (the board's clocks are "
    "restored).",
)
@click.option(
    "--plot",
    type=options.PathType(dir_okay=False, path_type=Path),
    default=None,
    help="Also draw full-inference latency and energy against the CPU operating point into this PNG "
    "(needs matplotlib: pip install matplotlib, the [plot] extra).",
)
@options.threads
@options.interpreter
@options.meter
@options.meter_rate
@options.json_output
def command(
    board: Optional[str],
    sysfs_root: Optional[Path],
    simulate: bool,
    model_path: Optional[Path],
    out: Optional[Path],
    repeats: int,
    passes: int,
    cool_below_c: Optional[float],
    cool_timeout_s: float,
    plot: Optional[Path],
    threads: int,
    interpreter: Optional[str],
    meter: str,
    meter_rate_hz: float,
    as_json: bool,
) -> None:
    """Measure every block and exit head of a bundle at every CPU operating point of a board and write
    the profile the DVFS planner uses (`edgeexit run --profile`).

    On a real board each operating point is pinned in turn (--passes sweeps, alternately ascending and
    descending), each segment's invoke is timed on the host (median of --repeats) and, where the board has
    a power meter, its energy, busy power and idle power are measured; the hottest thermal zone is recorded
    at each point. The board's clocks are restored afterwards, also on errors and Ctrl-C. On a simulated
    board (--simulate, or a tree from `edgeexit sim init`) the board model gives latency and energy and
    every output says SIMULATED. The GPU table is recorded, not swept: the segments run on the CPU.
    """
    from edgeexit.costmodel import default_profile_path, is_real_board_profile_path
    from edgeexit.dvfs import open_board
    from edgeexit.errors import SensorMissingError
    from edgeexit.probes import warn_meter_ignored
    from edgeexit.profiling import board_meter, check_output, inference_table, profile_bundle, write_profile

    bundle = load_bundle(model_path, calibration=False)
    refuse_overwriting([("--out", out), ("--plot", plot)], bundle_files(bundle))
    refuse_inside_board([("--out", out), ("--plot", plot)], sysfs_root)
    if out is not None:
        check_output(out)
    if plot is not None:  # before minutes of profiling, not after
        from edgeexit.bench.plots import have_matplotlib
        from edgeexit.errors import OutputError

        if plot.suffix.lower() != ".png":
            raise click.BadParameter("{} does not end in .png; the plot is a PNG, so name it FILE.png".format(plot),
                                     param_hint="'--plot'")
        if not have_matplotlib():
            raise click.UsageError("--plot needs matplotlib: pip install matplotlib (the [plot] extra)")
        # as --out: a directory, device or FIFO is refused without opening it (a FIFO no one reads blocks open())
        target = replace_target(plot, lambda why: OutputError("cannot write the plot to {} ({}); pass --plot FILE naming "
                                                              "a regular file somewhere writable".format(plot, why)))
        writable_output(target, "the plot", "--plot FILE")
    with ExitStack() as stack:
        # The interpreter first: one that cannot start fails before the board is opened or described.
        rt = stack.enter_context(Runtime(bundle, interpreter=interpreter, num_threads=threads))
        session = stack.enter_context(open_board(board or "auto", sysfs_root, simulate))
        path = check_output(out if out is not None else default_profile_path(bundle, session.board.name,
                                                                             session.simulated, threads))
        if session.simulated and is_real_board_profile_path(path, bundle, session.board.name):
            raise click.UsageError("--out {} is where runs on a real {} look for its measured profile, and this board is "
                                   "simulated; leave --out out (it writes {}) or name another file".format(
                                       out, session.board.name, default_profile_path(bundle, session.board.name, True,
                                                                                     threads)))
        if session.simulated:
            click.echo("edgeexit: {}".format(session.describe()), err=True)
            warn_meter_ignored(meter, warn)
            options.warn_rate_ignored(meter_rate_hz, warn)
            if cool_below_c is not None:
                warn("--cool-below-c is ignored on a simulated board: its model has no temperature")
                cool_below_c = None
        sampler = None
        if not session.simulated and meter != "none":
            from edgeexit.energy.sampler import SLOW_READ_GAP_CAP_S, Sampler

            try:
                m = board_meter(session, meter)
            except SensorMissingError as err:
                if meter != "auto":
                    raise
                warn("{} Profiling latency only; energy and power are left null.".format(err.message))
            else:
                stack.callback(m.close)  # after the sampler thread stopped (the stack unwinds in reverse)
                # A busy invoke loop holds the GIL for long stretches, so the sampler thread's reads slip (gaps of
                # ~120 ms on a Pi 5 tree) and the default two-period gap nulled whole profiles. Profile windows
                # hold one steady load, so samples are trusted as far out as a slow meter's are.
                sampler = stack.enter_context(Sampler(m, rate_hz=meter_rate_hz, max_gap_s=SLOW_READ_GAP_CAP_S))
        total = len(session.controller.cpu_opps_khz()) * (len(bundle.blocks) + len(bundle.exits))
        with progress(total * (1 if session.simulated else passes), "profiling") as update:
            data = profile_bundle(bundle, session, rt, threads=threads, repeats=repeats, sampler=sampler,
                                  passes=passes, on_progress=update, cool_below_c=cool_below_c,
                                  cool_timeout_s=cool_timeout_s, on_cooling=_say_cooling(cool_below_c))
        write_profile(data, path)
        description = session.describe()
    full = [s.label for s in bundle.blocks] + [bundle.exits[-1].label]
    rows = inference_table(data, full)
    if plot is not None:
        from edgeexit.profile_plot import plot_profile

        plot_profile(data, rows, plot)
    if as_json:
        echo_json({"profile_path": str(path), "simulated": data["simulated"], "board": data["board"],
                   "board_description": description, "restored": True, "full_inference": rows, "profile": data,
                   "plot_path": str(plot) if plot is not None else None})
        return
    if data["simulated"]:
        click.echo("SIMULATED board: the figures below come from the board model, not a measurement.")
    click.echo("profile of {} on {} ({} threads, latency: {}, energy: {})".format(
        data["model"], data["board"], data["threads"], data["latency_source"], data["energy_source"] or "not measured"))
    click.echo("full inference (every block + final exit) per CPU operating point:")
    click.echo(table([_row(r) for r in rows], ["cpu_khz", "latency_ms", "energy_mj", "busy_power_mw", "idle_power_mw"]))
    for note in data["notes"]:
        click.echo("note: {}".format(note))
    click.echo("wrote {}{}".format(path, " (SIMULATED)" if data["simulated"] else ""))
    if plot is not None:
        click.echo("wrote {}{}".format(plot, " (SIMULATED)" if data["simulated"] else ""))
    click.echo("board clocks restored")


def _say_cooling(below_c: Optional[float]) -> Any:
    def say(zone: str, temp_c: float) -> None:
        click.echo("edgeexit: waiting at the lowest clock for thermal zone {} ({:.1f} °C) to cool to {:g} °C".format(
            zone, temp_c, below_c), err=True)
    return say


def _row(r: Dict[str, Any]) -> Any:
    return [r["cpu_khz"], r["latency_ms"], r["energy_mj"], r["busy_power_mw"], r["idle_power_mw"]]
