"""Options shared by several commands, defined once (pip-tools' pattern)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import click

from edgeexit.deadlines import MAX_PERIOD_MS, deadline_problem  # one bound and one check, for the CLI and the library


class FiniteFloatRange(click.FloatRange):
    """A click.FloatRange that also refuses nan and inf: both pass every bound check, and a nan period or
    deadline then silently means "none", an inf meter rate busy-polls."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail("{!r} is not a finite number.".format(value), param, ctx)
        return rv


class PathType(click.Path):
    """A click.Path that refuses an empty value: pathlib reads "" as ".", so `--out ""` (an unset shell
    variable) would quietly mean the current directory."""

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("is empty: give a path.", param, ctx)
        return super().convert(value, param, ctx)


json_output = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of a table (for scripts)."
)

def _board_not_blank(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """An empty --board '' (an unset shell variable) read as no board at all: a host run, or 'auto'."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give a board name from `edgeexit boards` (or auto), or leave the option out")
    return value


board = click.option(
    "--board",
    metavar="NAME",
    default=None,
    callback=_board_not_blank,
    help="Board name from `edgeexit boards` (e.g. jetson-nano, raspberry-pi-5), or 'auto' to detect it "
    "from the device-tree model string.",
)

board_name = click.option(  # for a simulated tree, which has no device tree to detect a board from
    "--board",
    metavar="NAME",
    default=None,
    callback=_board_not_blank,
    help="Board name from `edgeexit boards` (e.g. jetson-nano, raspberry-pi-5).",
)

sysfs_root = click.option(
    "--sysfs-root",
    type=PathType(file_okay=False, path_type=Path),
    default=None,
    help="Root under which /sys lives: '/' on a board (the default), or a simulated tree made by "
    "`edgeexit sim init` or mounted by `edgeexit sim mount`.",
)

simulate = click.option(
    "--simulate",
    is_flag=True,
    help="Use a fresh temporary simulated sysfs tree and board physics for --board instead of the real "
    "board. Every output then says it is simulated.",
)

def _no_simulate(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        raise click.UsageError("{} works on a board's state, and a --simulate tree is gone when its run ends; make a "
                               "tree with `edgeexit sim init --board NAME DIR` and pass --sysfs-root DIR".format(
                                   ctx.command_path))
    return value


# `status` and `restore`: --simulate would show or restore a fresh tree, so it is refused with the way to a kept one.
no_simulate = click.option("--simulate", is_flag=True, hidden=True, expose_value=False, callback=_no_simulate,
                           help="Refused, with the way to a simulated tree that outlives the command.")

model = click.option(
    "--model",
    "model_path",
    type=PathType(path_type=Path),
    default=None,
    help="Bundle directory (manifest.json + int8 .tflite segments). Default: the bundled demo model.",
)

interpreter = click.option(
    "--interpreter",
    type=click.Choice(["auto", "litert", "tflite"]),
    default=None,
    help="TFLite interpreter backend: LiteRT (ai_edge_litert) or tflite_runtime. Default: "
    "$EDGEEXIT_INTERPRETER, else LiteRT when installed, else tflite_runtime.",
)

MAX_THREADS = 64  # more than any supported board has cores; LiteRT segfaults from about 2048

threads = click.option(
    "--threads",
    type=click.IntRange(min=1, max=MAX_THREADS),
    default=1,
    show_default=True,
    help="Interpreter threads per segment ({} at most). More than the board's online CPUs only share "
    "them.".format(MAX_THREADS),
)

def _not_blank(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """An empty --cpu-khz '' (an unset shell variable) used to read as "no pin" and ran unpinned without a word."""
    if value is not None and not value.strip():
        raise click.BadParameter("is empty; give a frequency from the board's operating-point table, or max "
                                 "or min, or leave the option out")
    return value


cpu_khz = click.option(
    "--cpu-khz",
    metavar="KHZ|max|min",
    default=None,
    callback=_not_blank,
    help="Pin every CPU policy to this operating point (kHz from the board's table, or max/min) for the run; "
    "the previous governor and limits are restored afterwards.",
)

gpu_hz = click.option(
    "--gpu-hz",
    metavar="HZ|max|min",
    default=None,
    callback=_not_blank,
    help="Pin the GPU devfreq device to this frequency (Hz, or max/min) for the run; restored afterwards.",
)

meter = click.option(
    "--meter",
    type=click.Choice(["auto", "ina3221", "pmic", "joulescope", "none"]),
    default="auto",
    show_default=True,
    help="Power meter on a real board: the board's own sensor (auto), an explicit backend, or none. A simulated "
    "board always reports its modelled energy, labelled 'simulated'.",
)

meter_rate = click.option(
    "--meter-rate-hz",
    type=FiniteFloatRange(min=1.0, max=1e6),
    default=200.0,
    show_default=True,
    help="Sampling rate of the power meter's background thread; never faster than the sensor updates, where its "
    "driver says (an INA3221's hwmon update_interval).",
)


_DEADLINE_HELP = ("Per-inference deadline, at most the period. The DVFS planner picks the least-energy operating point "
                  "that still meets it (also after a misprediction); a deadline no inference can meet is warned about. ")
_PERIOD_HELP = ("Periodic inference: one sample every PERIOD ms. Energy per period (inference plus idle until the next "
                "one) is reported. In between, the planner parks at the operating point that costs least, the next "
                "inference's start included; on a real board it keeps the meter probe's own time at each inference's edges (its bookkeeping, well under 1 ms: the meter is read by a background thread) out of each period. ")


def _ms_option(name: str, help_text: str) -> Any:
    return click.option(name, type=FiniteFloatRange(min=0.0, min_open=True, max=MAX_PERIOD_MS), default=None,
                        help=help_text)


# `run` and `bench` default differently (bench always needs both: see edgeexit.bench.core.run_bench)
deadline_ms = _ms_option("--deadline-ms", _DEADLINE_HELP + "--dvfs auto plans for it only with a policy that forecasts "
                         "(predictive, pe-heuristic, oracle); with another, pass --dvfs worst-case, or misses are only counted (the run says "
                         "so). Default: the period, if given, else none.")
period_ms = _ms_option("--period-ms", _PERIOD_HELP + "Default: none (inferences run back to back).")
bench_deadline_ms = _ms_option(
    "--deadline-ms", _DEADLINE_HELP + "Default: the period, if given, else twice the worst-case path (every block and "
    "exit head) at the maximum CPU clock, from the board model.")
bench_period_ms = _ms_option("--period-ms", _PERIOD_HELP + "Default: the deadline (given or defaulted); on a real board "
                             "with a power meter, plus room for the meter probe's own time at each period's edges (timed first).")


DEFAULT_MAX_DROP_PP = 0.25  # held-out, the demo's policies land 0.4-0.7 pp below `full` (fitted in-sample)

max_drop_pp = click.option(
    "--max-drop-pp",
    type=FiniteFloatRange(min=0.0, max=100.0),
    default=None,
    help="Accuracy target relative to the final exit on the calibration split, in percentage points "
    "[default: {:g}]. Thresholds are fitted to it on that split, so held-out accuracy lands somewhat lower: "
    "`edgeexit calibrate` prints the out-of-fold estimate, and on the demo's evaluation split the policies "
    "land 0.4-0.7 pp below `full`.".format(DEFAULT_MAX_DROP_PP),
)

target_accuracy = click.option(
    "--target-accuracy",
    type=FiniteFloatRange(min=0.0, max=1.0),
    default=None,
    help="Absolute accuracy target in [0, 1] on the calibration split, instead of --max-drop-pp.",
)


def drop_pp_or_target(max_drop_pp: Optional[float], target_accuracy: Optional[float]) -> float:
    """The --max-drop-pp in force; both options at once would leave one silently ignored."""
    if max_drop_pp is not None and target_accuracy is not None:
        raise click.UsageError("give --max-drop-pp (relative to the final exit) or --target-accuracy (absolute), "
                               "not both")
    return DEFAULT_MAX_DROP_PP if max_drop_pp is None else max_drop_pp


def check_deadline(deadline_ms: Optional[float], period_ms: Optional[float]) -> None:
    """A periodic inference must end before the next period starts: the deadline is at most the period."""
    why = deadline_problem(deadline_ms, period_ms)
    if why is not None:
        raise click.UsageError(why)


dvfs = click.option(
    "--dvfs",
    type=click.Choice(["auto", "planned", "race", "worst-case", "governor", "none"]),
    default="auto",
    show_default=True,
    help="CPU frequency control. planned: least energy for the forecast remaining work under the deadline "
    "(forecasting policies). race: maximum operating point, race-to-idle. worst-case: lowest point at which "
    "the worst-case path meets the deadline. governor: the board's default governor (emulated on a "
    "simulated board). none: leave the clocks alone (to the kernel governor, which a simulated board emulates "
    "under load, unless a clock is pinned). auto: planned for forecasting policies, else none.",
)

profile = click.option(
    "--profile",
    type=PathType(dir_okay=False, path_type=Path),
    default=None,
    help="A profile from `edgeexit profile` for the planner's latency/power figures. Default: the bundle's "
    "profiles/<board>[-simulated][-<N>threads].json (-<N>threads only for --threads N above 1) when it exists, "
    "else the board model from firmware_profiles/.",
)

thermal_limit = click.option(
    "--thermal-limit-mc",
    type=click.IntRange(min=20000, max=150000),
    default=None,
    help="Never raise a clock while any thermal zone is at or above this temperature (milli-degrees C); "
    "lowering stays allowed. A PMIC zone keeps its own limit (the Nano's reads a fixed 100 C). "
    "Default: each zone's own passive trip point from the board config.",
)


def given(name: str, value: Any) -> bool:
    """Whether option ``name`` was given (on the command line or in the environment), not left at its default."""
    ctx = click.get_current_context()
    source = getattr(ctx, "get_parameter_source", None)
    if source is None:  # click 7.x records no source: a value other than the default was given
        param = next(p for p in ctx.command.params if p.name == name)
        return value != param.default
    src = source(name)
    return src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT")


def warn_rate_ignored(meter_rate_hz: float, warn: Any) -> None:
    """An explicit --meter-rate-hz on a simulated board: said once, as an explicit --meter is."""
    if given("meter_rate_hz", meter_rate_hz):
        warn("--meter-rate-hz is ignored on a simulated board: its energy is modelled, and labelled simulated")
