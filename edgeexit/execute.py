"""One policy over many samples on a board (real, simulated, or none): the library behind `run` and `bench`.

Opens nothing itself: the caller passes an open board session (or None for host-only runs), so a
benchmark can run many arms on fresh sessions and `run` can pin clocks before starting.
"""
from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from edgeexit.bundle import Bundle
from edgeexit.bundle.data import Samples
from edgeexit.errors import PolicyError, warn_stderr
from edgeexit.costmodel import SegmentLatency
from edgeexit.deadlines import check_deadline_period, real_as_float
from edgeexit.energy.factory import KINDS as METER_KINDS
from edgeexit.planner import LOAD_DRIVEN, check_dvfs, overhead_summary, shortest_path_ms
from edgeexit.policies.base import ExitPolicy
from edgeexit.probes import BoardRun, attach_planner, cost_model_for, make_probe
from edgeexit.records import RecordWriter
from edgeexit.runner import RunOutcome, run_samples
from edgeexit.runtime import Runtime, check_policy

MIN_METER_RATE_HZ, MAX_METER_RATE_HZ = 1.0, 1e6  # as the CLI's --meter-rate-hz


@dataclass
class Execution:
    """What one run produced: per-inference records, the summary, and the planner (if any)."""

    outcome: RunOutcome
    summary: Dict[str, Any]
    planner: Any = None
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> List[Dict[str, Any]]:
        return self.outcome.records


def execute(
    bundle: Bundle,
    runtime: Runtime,
    policy: ExitPolicy,
    samples: Samples,
    session: Any = None,
    dvfs: str = "none",
    deadline_ms: Optional[float] = None,
    period_ms: Optional[float] = None,
    threads: Optional[int] = None,
    profile: Optional[Path] = None,
    meter: str = "auto",
    meter_rate_hz: float = 200.0,
    writer: Optional[RecordWriter] = None,
    on_progress: Optional[Callable[[int], None]] = None,
    pass_labels: bool = False,
    warn: Any = None,
    physics_override: Any = None,
) -> Execution:
    """Run ``policy`` over ``samples`` on ``runtime`` (loaded from ``bundle``), on a board or host-only.

    ``session``: an open board session (:func:`edgeexit.dvfs.open_board`), or None for a host-only run, which
    reports host latency and no energy. ``dvfs``: who sets the CPU clock, one of planned, race, worst-case,
    governor or none (the CLI's --dvfs after resolving auto); anything but none needs a session, planned a
    forecasting policy, worst-case a deadline or period. ``deadline_ms``: per-inference deadline in ms, at most
    the period (default: the period); each record says whether it was missed. ``period_ms``: one inference
    every period, energy per period reported (needs a session to keep the schedule). ``threads``: interpreter
    threads per segment that the board model and the profile assume; default (and only accepted value): the
    runtime's ``num_threads``. ``profile``: an `edgeexit profile` file for the planner (default: the bundle's
    own for this board, else the board model). ``meter``/``meter_rate_hz``: the power meter on a real board
    (auto, ina3221, pmic, joulescope, none) and its sampling rate. ``writer``: where each record goes as it
    completes. ``on_progress(1)``: called after each inference with the increment (as click's progress bar's
    ``update`` takes it). ``pass_labels``: let the policy see the true
    label (the oracle only). ``warn(msg)``: where warnings go (default: stderr; pass ``lambda msg: None`` to
    silence them). ``physics_override``: the board model to use instead of the session's (a sensitivity study).

    Raises an :class:`~edgeexit.errors.EdgeExitError` for arguments that cannot run together, before the board
    is touched.
    """
    warn_given = warn is not None
    if warn_given and not callable(warn):
        raise PolicyError("warn must be callable (called with each warning's text), not a {}; pass e.g. "
                          "warn=print, or leave it out for stderr".format(type(warn).__name__))
    if warn is None:
        warn = warn_stderr  # the library's default (errors.warn_stderr): a dropped warning hides why figures moved
    _check_objects(bundle, runtime, session, writer, on_progress, profile)
    profile = Path(profile) if profile is not None else None
    runtime.check_open()  # before a probe or a planner touches the board
    if session is not None:
        session.check_open()  # entered and not closed: else nothing saves or restores what the run writes
    check_policy(policy)
    deadline_ms, period_ms = check_deadline_period(deadline_ms, period_ms)
    check_dvfs(dvfs, policy, deadline_ms, period_ms)  # whatever the session: a bad mode is never silently ignored
    if session is None and dvfs != "none":
        raise PolicyError("dvfs={!r} sets a board's clocks, and no board session was given; pass "
                          "session=edgeexit.dvfs.open_board(...), or dvfs='none' for a host-only run".format(dvfs))
    _check_meter(meter, meter_rate_hz)  # on any board: a script that passes in CI must not fail on the board
    if session is None and period_ms is not None:
        # it was dropped without a word, and taken as the deadline
        raise PolicyError("period_ms={:g} needs a board session, which keeps the schedule and reports energy per "
                          "period; pass session=edgeexit.dvfs.open_board(...), or give deadline_ms alone for a "
                          "host-only run".format(period_ms))
    threads = _threads(runtime, threads)
    if deadline_ms is None:
        deadline_ms = period_ms  # a periodic inference must end by the next period (as --deadline-ms documents)
    routed = ExitStack()
    if warn_given and session is not None:  # the controller and its guard warn mid-run too
        routed.enter_context(session.controller.warnings_to(warn))
    reported = session.controller.reported if session is not None else (0, 0, 0)
    with routed:
        brun: BoardRun = make_probe(session, threads, period_ms=period_ms, meter=meter, meter_rate_hz=meter_rate_hz, warn=warn,
                                    physics=physics_override)
        try:
            hooks = []
            extra: Dict[str, Any] = {}
            planner = None
            # On a real board --dvfs none leaves the clock to the kernel's governor, which follows the load. A
            # simulated kernel sees no load (its schedutil/ondemand read the floor), so it is emulated as it
            # would follow these inferences; a pinned (userspace) or static governor needs nothing.
            follows = load_driven_governor(session) if (brun.simulated and dvfs in ("none", "governor")) else None
            emulate = None
            if brun.simulated and dvfs == "governor" and not follows:
                # A real board's governor arm leaves the clock to what runs (a pin, performance): so does this one.
                emulate = False
                warn("dvfs='governor' leaves the clock to the kernel, and this session's CPU is pinned or runs a "
                     "governor that does not follow the load, so the run stays where it is, as on a real board; for "
                     "the board's default governor, run on a fresh session (or restore the governor first)")
            if session is not None and (dvfs != "none" or follows):
                runtime.bind(policy)
                # only a planner that plans from it hears that the bundle's profile is for another thread count
                cost = cost_model_for(brun, bundle, threads, profile, warn=warn if dvfs in ("planned", "worst-case") else None)
                planner = attach_planner(brun, "governor" if follows else dvfs, runtime, policy, cost, deadline_ms,
                                         period_ms, governor=follows, warn=warn, emulate=emulate)
                if planner.mode == "governor" and planner.emulate_governor:  # --dvfs governor too, on a simulated board
                    extra["governor_emulated"] = planner.governor
                hooks.append(planner)
                extra["cost_model"] = cost.source
                shortest_ms = planner.shortest_ms()
                if deadline_ms is not None and deadline_ms < shortest_ms:
                    warn("no inference can meet the {:g} ms deadline: the shortest path through the bundle takes {:.3f} ms "
                         "at the maximum clock ({}); every inference will miss it, so give a longer --deadline-ms (or "
                         "--period-ms)".format(deadline_ms, shortest_ms, cost.source))
            if profile is not None and planner is None:
                _check_unused_profile(brun, bundle, threads, profile, session, warn)
            if session is not None and planner is None and deadline_ms is not None:
                _warn_unmeetable(brun, runtime, policy, bundle, threads, deadline_ms, session, warn)
            annotate = None
            if session is not None:
                ctl = session.controller
                annotate = lambda: {"thermal_hold": ctl.thermal_hold}  # noqa: E731
            outcome = run_samples(runtime, policy, samples, writer=writer, probe=brun.probe, hooks=hooks,
                                  on_progress=on_progress, pass_labels=pass_labels, deadline_ms=deadline_ms, annotate=annotate)
            summary = outcome.summary(board=brun.board_name).to_dict()
            if session is not None:
                ctl = session.controller
                writes0, guard0, honour0 = reported  # what earlier runs on this session reported (pins since count)
                guard, honour = ctl.guard_events, ctl.honour_events
                summary["board_description"] = session.describe()
                summary["sysfs_writes"] = ctl.write_count - writes0
                summary["dvfs"] = dvfs
                summary["sysfs_writes_per_inference"] = summary["sysfs_writes"] / max(1, len(samples))
                summary["thermal_events"] = guard[guard0:]
                summary["not_honoured_writes"] = [e.to_dict() for e in honour[honour0:]]
            if planner is not None and planner.plan_ns and not follows:
                summary.update(overhead_summary(planner.plan_ns, outcome.records))  # host time, on any board
            summary.update(extra)
            return Execution(outcome=outcome, summary=summary, planner=planner, extra=extra)
        finally:
            brun.close()
            if session is not None:  # a run that failed keeps its writes out of the next run's count too
                ctl = session.controller
                ctl.reported = (ctl.write_count, len(ctl.guard_events), len(ctl.honour_events))


def _check_objects(bundle: Any, runtime: Any, session: Any, writer: Any, on_progress: Any, profile: Any) -> None:
    """The objects ``execute`` is given are of the kinds it uses: a board name for ``session`` or a path for
    ``writer`` used to fail deep inside (an AttributeError), some after the first inference."""
    if not isinstance(runtime, Runtime):
        raise PolicyError("runtime must be an edgeexit.runtime.Runtime, not a {}; build one with "
                          "Runtime(bundle)".format(type(runtime).__name__))
    if not isinstance(bundle, Bundle) or os.path.realpath(str(bundle.root)) != os.path.realpath(str(runtime.bundle.root)):
        raise PolicyError("bundle must be the loaded Bundle the runtime was built from ({}), not {}".format(
            runtime.bundle.root, bundle.root if isinstance(bundle, Bundle) else repr(bundle)))
    if session is not None and not (hasattr(session, "check_open") and hasattr(session, "controller")):
        raise PolicyError("session must be an open board session, not a {}: pass session=edgeexit.dvfs.open_board"
                          "({!r}, simulate=True) (or sysfs_root=...) entered with `with`, or None for a host-only "
                          "run".format(type(session).__name__, session if isinstance(session, str) else "jetson-nano"))
    if writer is not None and not callable(getattr(writer, "write", None)):
        raise PolicyError("writer must have a write(record) method (edgeexit.records.RecordWriter(path)), not a "
                          "{}".format(type(writer).__name__))
    if on_progress is not None and not callable(on_progress):
        raise PolicyError("on_progress must be callable (called with 1 after each inference), not a "
                          "{}".format(type(on_progress).__name__))
    if profile is not None and not isinstance(profile, (str, os.PathLike)):
        raise PolicyError("profile must be the path of an `edgeexit profile` file, not a {}".format(
            type(profile).__name__))


def _check_meter(meter: Any, meter_rate_hz: Any) -> None:
    if meter not in METER_KINDS:
        raise PolicyError("meter={!r} is not a power meter; use one of {}".format(meter, ", ".join(METER_KINDS)))
    if not MIN_METER_RATE_HZ <= real_as_float(meter_rate_hz) <= MAX_METER_RATE_HZ:
        raise PolicyError("meter_rate_hz={!r} is not a sampling rate: give Hz from {:g} to {:g}".format(
            meter_rate_hz, MIN_METER_RATE_HZ, MAX_METER_RATE_HZ))


def _threads(runtime: Runtime, threads: Optional[int]) -> int:
    """The thread count the board model assumes: the one the runtime's interpreters run."""
    if threads is None:
        return int(runtime.num_threads)
    if isinstance(threads, bool) or not isinstance(threads, Integral):  # True and 1.0 compared equal to 1
        raise PolicyError("threads={!r} is not a thread count; leave it out (it follows the Runtime's num_threads={})"
                          .format(threads, runtime.num_threads))
    if threads != runtime.num_threads:
        raise PolicyError("threads={!r} but the Runtime runs num_threads={}: the board model would time another thread "
                          "count than ran; leave threads out (it follows the Runtime) or build Runtime(bundle, "
                          "num_threads={!r})".format(threads, runtime.num_threads, threads))
    return int(threads)


def _warn_unmeetable(brun: BoardRun, runtime: Runtime, policy: ExitPolicy, bundle: Bundle, threads: int,
                     deadline_ms: float, session: Any, warn: Any) -> None:
    """A deadline no inference can meet where no planner sets the clock (a pin, --dvfs none): judged at the
    clock the CPU is held at, or at the highest it may run where a governor follows the load."""
    runtime.bind(policy)
    cost = cost_model_for(brun, bundle, threads)
    ctl = session.controller
    held = load_driven_governor(session) is None  # pinned by this session, or a governor that ignores the load
    khz = int(brun.cpu_khz()) if held else int(ctl.cpu_cap_khz() or max(ctl.cpu_opps_khz()))
    shortest_ms = shortest_path_ms(runtime, policy, cost, khz)
    if deadline_ms < shortest_ms:
        warn("no inference can meet the {:g} ms deadline: the shortest path through the bundle takes {:.3f} ms at {} "
             "({} kHz; {}); every inference will miss it, so give a longer --deadline-ms (or --period-ms){}".format(
                 deadline_ms, shortest_ms, "the clock the CPU is held at" if held else "the highest clock it may run",
                 khz, cost.source, ", or a higher --cpu-khz" if held else ""))


def load_driven_governor(session: Any) -> Optional[str]:
    """The CPU governor the emulation models (schedutil, ondemand) when the board runs one and this session
    has not pinned the CPU (through min/max where a profile has no userspace governor), else None."""
    ctl = session.controller
    online = ctl.online_cpus()
    if not online or any(d.relpath in ctl.expected for d in online):
        return None
    gov = online[0].governor()
    return gov if gov in LOAD_DRIVEN else None


def _check_unused_profile(brun: BoardRun, bundle: Bundle, threads: int, profile: Path, session: Any, warn: Any) -> None:
    """A --profile that no DVFS planner will read: checked all the same, then warned about once.

    Checked exactly as a planning run checks it (readable, an edgeexit profile, this bundle, this board,
    this thread count), so the same file gets the same verdict whatever --dvfs resolves to, and a typo'd path
    fails at once rather than the day --dvfs changes. Then a warning rather than a refusal: with --dvfs auto,
    whether the planner runs depends on the policy (threshold makes no forecast) and --cpu-khz, so one
    command line that passes --profile to a sweep over policies is legitimate, but the user must learn that
    this run's figures did not come from the file.
    """
    if session is not None:
        cost_model_for(brun, bundle, threads, profile)
        why = "no DVFS planner runs here (--dvfs none: the clocks are left alone or pinned with --cpu-khz, or " \
              "--dvfs auto with a policy that makes no forecast)"
        fix = "to plan with it, leave out --cpu-khz and pass --dvfs planned, race, worst-case or governor; else leave " \
              "out --profile"
    else:
        SegmentLatency.from_profile(profile, bundle)  # no board to check it against: the bundle and its table
        why = "this run has no board, so nothing plans clocks"
        fix = "add --board NAME to plan with it, or leave --profile out"
    warn("--profile {} is unused: {}; {}".format(profile, why, fix))
