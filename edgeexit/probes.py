"""Where a run's board-side latency and energy come from, chosen explicitly.

* a simulated board: :class:`~edgeexit.sim.board_probe.SimulatedBoardProbe` (the physics model; the
  modelled rail powers are also published into the simulated sensors);
* a real board with a power meter: :class:`MeterProbe` (host clock for latency, the meter's integral
  over each inference window for energy);
* otherwise the base :class:`~edgeexit.runner.BoardProbe`: host latency, energy unknown.
"""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from edgeexit.costmodel import (CostModel, PhysicsCostModel, default_profile_path, load_profile_json,
                                other_threads_note)
from edgeexit.energy.busy_idle import CONVERSION_SPAN, BusyHistory, BusyIdleFit, locked_period
from edgeexit.energy.reading import EnergyWindow
from edgeexit.energy.sampler import Sampler
from edgeexit.energy.windows import WindowedEnergySource
from edgeexit.policies.base import SampleState
from edgeexit.runner import BoardProbe
from edgeexit.runtime import InferenceResult
from edgeexit.sim.board_probe import SimulatedBoardProbe
from edgeexit.sim.physics import BoardPhysics
from edgeexit.sim.sensors import publish_to_kernel


def board_physics(session: Any, threads: int) -> BoardPhysics:
    """The physics of a simulated board session, with as many cores as the board has online."""
    online = sum(len(d.online_cpus()) for d in session.controller.online_cpus())
    return BoardPhysics(session.profile, threads=threads, cores=online or session.board.possible_cpus)


def board_meter(target: Any, kind: str = "auto", history_s: Optional[float] = None) -> Any:
    """The power meter of a board target (real or simulated), always through the real backends.

    On a simulated tree the INA3221 backends read its sensor files exactly like a real board's; the
    Pi 5 PMIC backend runs the target's ``vcgencmd`` (on a simulated tree, its simulated firmware's answers). Raises
    :class:`~edgeexit.errors.SensorMissingError` where the board has no sensor (Pi 4).
    """
    from edgeexit.energy.factory import meter_for_board

    return meter_for_board(target.board.power, target.root, kind=kind, runner=target.vcgencmd(), history_s=history_s)


READ_HISTORY = 32  # periods whose edge-read time the planner's reserve looks at
READ_QUANTILE = 0.9  # ... and the quantile of them it keeps
LATE_S = 0.001  # asking for a start later than planned by more than this is an overrun, not timer slack
LAGGED_METHOD = ("busy and idle power fitted to the meter's reads so far, each read weighed by the busy share of "
                 "the {:.3g} ms before it that its value may come from (the sensor's update interval and conversion), "
                 "times each window's duration")


class ClockOnly(WindowedEnergySource):
    """Window edges on the host clock and no energy (every window invalid, without warnings): a run with no
    meter (``--meter none``, or a board without a sensor) still keeps its period's schedule."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._init_windows()

    def now_s(self) -> float:
        return self.clock()

    def energy_mj(self, t0_s: float, t1_s: float) -> EnergyWindow:
        return EnergyWindow(0.0, 0.0, 0, "not measured", False, t0_s, t1_s, "not measured", "none")


class MeterProbe(BoardProbe):
    """Energy per inference from a sampled power meter; latency from the host clock.

    The window edges lie outside the latency: the one before an inference in :meth:`before_inference`,
    before the runtime's clock starts, the one after it once the runtime has stopped its clock. A sampler
    that reads at its edges (an INA3221 read is six I2C file reads, a Pi 5 PMIC read forks vcgencmd) reads
    there; the one :func:`make_probe` builds reads only on its own schedule.

    With a period, inference is periodic for real, on a fixed schedule: inference k starts at
    t_0 + k * period (or at once, when the one before overran), and the probe idles until then in
    :meth:`before_inference`, metering that idle time too. A period's windows are contiguous: the idle
    window of inference k ends where inference k + 1's window begins, so energy per period covers the
    whole period actually taken (``period_actual_ms``), reads and waits included. Its idle energy is
    integrated only after the next inference's window has closed, by which time a streaming meter's late
    data (the Joulescope's, ~15 ms) has arrived: waiting for it earlier would delay the next inference.
    A record is therefore complete one inference later; :meth:`hold` and :meth:`flush` hand records on
    when they are (:meth:`flush` after an error or an interrupt too, marking the open period so).

    The probe wakes at the scheduled start and then takes the edge read, so each window starts one read
    after its due time; every start is shifted alike, so periods keep their length on average (a read's
    own jitter aside). An inference is late when the probe asks for it more than ``LATE_S`` after it was
    due: then the one before did not fit its period (``period_overrun``).

    A polled meter (INA3221, the Pi 5 PMIC) reads every few ms, while an inference takes a fraction of
    that: integrating its window between the reads around it, taken while the board is between loads,
    reported idle power. The probe instead fits the busy and the idle power to every read so far (the
    sampler's reads fall at random phases): without a sensor lag, the mean of the reads inside inference
    windows and the mean of those outside; with one (an INA3221's conversions, in a periodic run), from
    the busy share of the time each read's value may come from (:mod:`edgeexit.energy.busy_idle`). An
    inference's energy is the busy power times its duration, an idle gap's the idle power times its
    length (``energy_method``). Unknown until the reads give that power; a window the meter could not
    cover is unknown as before. A streaming meter (the Joulescope) integrates its own samples over each
    window.
    """

    latency_source = "host"

    def __init__(self, sampler: WindowedEnergySource, name: str, period_ms: Optional[float] = None,
                 sleep: Any = time.sleep) -> None:
        self.sampler = sampler
        self.energy_source = name
        self.period_ms = period_ms
        self._sleep = sleep
        self._n = 0
        self._t0 = 0.0  # start of the current inference's window (sampler clock, s)
        self._due_s: Optional[float] = None  # when the next inference is scheduled to start
        self._start_s: Optional[float] = None  # when the current one was due (or was asked for, when late)
        self._late = False  # the current inference was asked for late: the period before it overran
        # (start, inference window, its energy) of the held record's period
        self._prev: Optional[Tuple[float, float, Optional[float]]] = None
        self._held: Optional[Dict[str, Any]] = None  # the record whose period is still open
        self._done: Optional[Dict[str, Any]] = None  # period fields of the held record, once its period closed
        self.last: Dict[str, Any] = {}
        self._read_ms: Deque[float] = deque(maxlen=READ_HISTORY)  # per period: both edge reads (ms)
        self._begin_read_ms = 0.0
        # The inference windows so far, and the busy and idle power fitted to the reads. A read is stored once it
        # ends, after a short window has closed: it is counted then, by its midpoint. The sensor's lag counts
        # only between periodic inferences: back to back, the time before an inference is busy too.
        meter = getattr(sampler, "meter", None)
        self._lag_s = float(getattr(meter, "conversion_lag_s", 0.0) or 0.0) if period_ms is not None else 0.0
        self._history = BusyHistory(0.0)
        self._fit: Optional[BusyIdleFit] = None  # once the first reads tell whether the lag is real
        self._mark = float("-inf")  # reads stamped up to here are counted
        self._last_good_s: Optional[float] = None  # the newest good read counted
        self.energy_method = sampler.energy_method

    def before_inference(self) -> None:
        t_ask, self._late = self._wait_for_due()
        self._n += 1
        self._t0 = self.sampler.begin_window("inference-{}".format(self._n))
        self._begin_read_ms = (self._t0 - t_ask) * 1e3
        # The schedule runs from the due time (a sleep's oversleep would add up), unless this start is late:
        # then from now, so the next inference gets a whole period rather than a burst to catch up.
        self._start_s = self._due_s if (self._due_s is not None and not self._late) else t_ask

    def _wait_for_due(self) -> Tuple[float, bool]:
        """Idle until the scheduled start; returns the time it then is, and whether that is late (more than
        ``LATE_S`` after the start was due)."""
        now = self.sampler.now_s()
        if self._due_s is not None and self._due_s > now:
            self._sleep(self._due_s - now)
            now = self.sampler.now_s()
        return now, self._due_s is not None and now > self._due_s + LATE_S

    def end(self, result: InferenceResult, state: SampleState) -> None:
        t_end = self.sampler.now_s()
        key = "inference-{}".format(self._n)
        if self.sampler.polled:  # judged by the reads inside windows (_window_mj), not integrated here
            t0, t1 = self.sampler.close_window(key)
            stream = None
        else:
            stream = self.sampler.end_window(key)
            t0, t1 = stream.t0_s, stream.t1_s
        self._read_ms.append(self._begin_read_ms + (self.sampler.now_s() - t_end) * 1e3)
        prev = self._prev if self.period_ms is not None else None
        if self.sampler.polled:  # the window known before any read in it is counted
            self._history.add(t0, t1)
            self._count_reads()
        if prev is not None:  # the previous period ended where this inference's window began
            self._done = self._period_fields(prev, self._t0, self._late)
        # A window the meter could not cover is "energy unknown", never a guess.
        energy = self._window_mj(True, t0, t1, stream)
        rec: Dict[str, Any] = {"energy_mj": None if energy is None else round(energy, 6),
                               "energy_samples": len(self.sampler.valid_mw(t0, t1)) if stream is None else stream.n_samples}
        if self.period_ms is not None:
            self._prev = (self._t0, t1, energy)
            rec["period_ms"] = self.period_ms
            self._due_s = self._start_s + self.period_ms / 1e3  # type: ignore[operator]
        self.last = rec

    def _window_mj(self, busy: bool, t0_s: float, t1_s: float, stream: Optional[EnergyWindow]) -> Optional[float]:
        """Energy over ``[t0_s, t1_s]``: a stream's own integral (``stream``), or a polled meter's busy (else idle)
        power fitted so far times its duration; None if unknown, or where the meter has had no good read for a
        while (an outage)."""
        if stream is not None or not self.sampler.polled:
            window = stream if stream is not None else self.sampler.energy_mj(t0_s, t1_s)
            return window.energy_mj if window.valid else None
        limit_s = max(4.0 * self.sampler.sample_interval_s(), self.sampler.gap_s())
        alive = self._last_good_s is not None and t1_s - self._last_good_s <= limit_s
        if self.sampler.latest_s() is not None:  # nothing read yet is no outage
            self.sampler.note_window(alive)
        if not alive or self._fit is None:
            return None
        mw = self._fit.busy_mw() if busy else self._fit.idle_mw()
        return None if mw is None else mw * (t1_s - t0_s)

    def _count_reads(self, upto_s: float = float("inf")) -> None:
        """Fit each read stored since the last call (up to ``upto_s``), by its midpoint, to the windows up to now.
        Reads end in the order they are stamped (one thread reads), so every read stamped before the newest one
        is stored: none is lost to a window judged while it was still reading, which skipped every window's last
        half-read (and, waited for, locked the reads to the windows' phase). Called between inferences, so no
        window is open: a read's time back to its lag is all known."""
        newest = self.sampler.latest_s()
        upto = min(upto_s, newest) if newest is not None else self._mark
        if upto <= self._mark:
            return
        reads = self.sampler.valid_mw(self._mark, upto)
        if reads and self._fit is None:
            self._start_fit()
        for t, mw in reads:
            self._last_good_s = t
            share = self._history.busy_share(t)
            if share is not None:  # None: it measured the time before the run
                self._fit.add(share, mw)  # type: ignore[union-attr]
        self._mark = upto

    def _start_fit(self) -> None:
        """Fit with the sensor's lag unless its reads show it has none: an INA3221 set to convert on demand
        (single-shot) waits for the conversion, so each read takes about the update interval and is fresh."""
        took = getattr(self.sampler, "read_duration_s", lambda: None)()
        if self._lag_s > 0 and took is not None and took >= self._lag_s:  # a continuous read is a few I2C reads
            self._lag_s = 0.0
        self._history.lag_s = self._lag_s * CONVERSION_SPAN
        self._fit = BusyIdleFit(lagged=self._lag_s > 0)
        if self._lag_s > 0:
            self.energy_method = LAGGED_METHOD.format(self._lag_s * CONVERSION_SPAN * 1e3)

    def _period_fields(self, prev: Tuple[float, float, Optional[float]], next_start_s: float,
                       overrun: bool) -> Dict[str, Any]:
        """The held record's idle and period energy: idle from its inference window's end to ``next_start_s``
        (a polled meter's reads in that idle window already being counted, see :meth:`end` and :meth:`flush`)."""
        t0, t1, energy = prev
        idle = self._window_mj(False, t1, next_start_s, None)
        return {
            "idle_energy_mj": None if idle is None else round(idle, 6),
            "energy_period_mj": round(energy + idle, 6) if (energy is not None and idle is not None) else None,
            "period_actual_ms": round((next_start_s - t0) * 1e3, 6),
            "period_overrun": overrun,  # the inference, with its reads, did not fit its period
        }

    def read_reserve_ms(self) -> float:
        """Time a period must keep for the meter's two edge reads, outside the inference: the
        READ_QUANTILE of the last READ_HISTORY periods' (one stalled read among them does not starve the
        planner); 0 before the first period."""
        if not self._read_ms:
            return 0.0
        ms = sorted(self._read_ms)
        return ms[int(READ_QUANTILE * (len(ms) - 1))]  # below the maximum from the second period on

    def time_edge_reads_ms(self, tries: int = 5) -> float:
        """How long a period's two edge reads take on this meter (the slowest of ``tries`` pairs, ms): the time
        a period must keep for them beside the inference (an INA3221 read is six I2C file reads; the Pi 5's
        PMIC forks vcgencmd)."""
        worst = 0.0
        for i in range(tries):
            key = "read-time-{}".format(i)
            t = self.sampler.now_s()
            self.sampler.begin_window(key)
            self.sampler.close_window(key)  # timed, not measured: no window warning before the run
            worst = max(worst, (self.sampler.now_s() - t) * 1e3)
        return worst

    def measure(self, result: InferenceResult) -> Dict[str, Any]:
        return dict(self.last)

    def hold(self, rec: Dict[str, Any]) -> List[Dict[str, Any]]:
        if self.period_ms is None:
            return [rec]
        out = []
        if self._held is not None and self._done is not None:
            self._held.update(self._done)
            out.append(self._held)
        self._held, self._done = rec, None
        return out

    def flush(self, interrupted: bool = False) -> List[Dict[str, Any]]:
        """Close the last period: idle until its scheduled end, then complete its record. ``interrupted`` (an
        error, Ctrl-C or SIGTERM ended the run): no waiting and no meter read, the open period is unknown."""
        if self._held is None or self._prev is None:
            return []
        rec, prev = self._held, self._prev
        self._held = self._prev = None
        if interrupted:
            rec.update({"idle_energy_mj": None, "energy_period_mj": None, "period_actual_ms": None,
                        "period_overrun": None, "interrupted": True})
            return [rec]
        _, late = self._wait_for_due()
        key = "period-end-{}".format(self._n)
        t_end = self.sampler.begin_window(key)  # an edge read at the period's end
        self.sampler.cancel_window(key)
        if self.sampler.polled:
            self._count_reads(t_end)
        rec.update(self._period_fields(prev, t_end, late))
        return [rec]


class BoardRun:
    """The board side of a run: the DVFS session (or None), the probe, and the physics when simulated."""

    def __init__(self, session: Any, probe: Optional[BoardProbe], physics: Optional[BoardPhysics], sampler: Optional[Sampler]) -> None:
        self.session = session
        self.probe = probe
        self.physics = physics
        self.sampler = sampler
        self.planner: Any = None  # a DvfsPlanner once attached

    def cpu_khz(self) -> int:
        """The CPU operating point in force: the planner's (read back when it wrote) or the kernel's."""
        if self.planner is not None:
            return int(self.planner.current)
        return int(self.session.controller.running_cpu_khz())

    @property
    def simulated(self) -> bool:
        return bool(self.session is not None and self.session.simulated)

    @property
    def board_name(self) -> Optional[str]:
        return self.session.board.name if self.session is not None else None

    def describe(self) -> Optional[str]:
        return self.session.describe() if self.session is not None else None

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None


def warn_meter_ignored(meter: str, warn: Any) -> None:
    """An explicit --meter on a simulated board: said once, not silently dropped."""
    if meter != "auto" and warn is not None:
        warn("--meter {} is ignored on a simulated board: its energy is modelled, and labelled simulated".format(meter))


def make_probe(session: Any, threads: int, period_ms: Optional[float] = None, meter: str = "auto",
               meter_rate_hz: float = 200.0, warn: Any = None, physics: Optional[BoardPhysics] = None) -> BoardRun:
    """Pick the probe for an open board session (see module doc). ``warn(msg)`` reports a degraded choice."""
    from edgeexit.errors import SensorMissingError

    if session is None:
        return BoardRun(None, None, None, None)
    if session.simulated:
        warn_meter_ignored(meter, warn)
        physics = physics or board_physics(session, threads)
        kernel = session.sim
        publish = publish_to_kernel(kernel, session.board, physics.pm.rail_voltage_mv) if kernel is not None else None
        brun = BoardRun(session, None, physics, None)
        brun.probe = SimulatedBoardProbe(physics, brun.cpu_khz, period_ms=period_ms, publish=publish)
        return brun
    from edgeexit.energy.factory import NoMeter

    def unmetered() -> BoardRun:
        # Without a meter the probe still keeps the period's schedule (the base probe would run back to back).
        return BoardRun(session, MeterProbe(ClockOnly(), NoMeter.source, period_ms=period_ms), None, None)

    if meter == "none":
        return unmetered()  # no sampler thread reading nothing, and no "no usable samples" warning every run
    history_s, rate_hz = meter_history(period_ms, meter_rate_hz, warn)
    try:
        m = board_meter(session, meter, stream_history_s(period_ms, warn) if meter == "joulescope" else None)
    except SensorMissingError as err:
        if meter != "auto":
            raise
        if warn is not None:
            warn("{} Energy is not reported for this run.".format(err.message))
        return unmetered()
    # No reads of its own at window edges: the periodic reads must be free to fall inside short inferences.
    lag_s = float(getattr(m, "conversion_lag_s", 0.0) or 0.0)
    if period_ms is not None and warn is not None and locked_period(period_ms / 1e3, lag_s):
        warn("--period-ms {:g} is close to a multiple of the power meter's {:g} ms update interval (or it of the period): "
             "its conversions fall at the same phase of every period, so energy per inference can be far off; give "
             "a period a few percent away from any multiple".format(period_ms, lag_s * 1e3))
    sampler = Sampler(m, rate_hz=rate_hz, history_s=history_s, edge_reads=False).start()
    return BoardRun(session, MeterProbe(sampler, m.source, period_ms=period_ms), None, sampler)


#: Readings a sampler keeps at most: ten minutes at the default 200 Hz (each holds its rails' powers).
MAX_KEPT_READINGS = 120000
DEFAULT_HISTORY_S = 600.0
#: A streaming meter keeps its raw samples (the Joulescope: ~0.8 MB/s at 100 kHz): at most this much.
MAX_STREAM_HISTORY_S = 300.0
STREAM_HISTORY_S = 120.0  # the Joulescope meter's own default


def _needed_history_s(period_ms: float) -> float:
    """A period's idle energy is integrated after the next inference: readings must reach back a period
    and a half (the held period, the next inference and its window's late data), with a margin."""
    return 1.5 * period_ms / 1e3 + 30.0


def meter_history(period_ms: Optional[float], rate_hz: float, warn: Any = None) -> Tuple[float, float]:
    """(seconds of readings to keep, sampling rate) for a polled meter's sampler. A long period at a high
    rate would hold millions of readings, so the background rate drops to fit (fewer reads then fit each
    inference's energy), with a warning."""
    history_s = DEFAULT_HISTORY_S if period_ms is None else max(DEFAULT_HISTORY_S, _needed_history_s(period_ms))
    fit_hz = MAX_KEPT_READINGS / history_s
    if rate_hz > fit_hz:
        if warn is not None:
            warn("--period-ms {:g} is long: the power meter samples at {:.3g} Hz instead of --meter-rate-hz {:g} to "
                 "keep {:.0f} s of readings in memory (energy per inference is then fitted from fewer reads)".format(
                     period_ms, fit_hz, rate_hz, history_s))
        rate_hz = fit_hz
    return history_s, rate_hz


def stream_history_s(period_ms: Optional[float], warn: Any = None) -> float:
    """How much of its stream a streaming meter keeps for this run: enough for the period, within
    MAX_STREAM_HISTORY_S; a longer period's idle energy is then unknown, which is said up front."""
    if period_ms is None:
        return STREAM_HISTORY_S
    needed = max(STREAM_HISTORY_S, _needed_history_s(period_ms))
    if needed > MAX_STREAM_HISTORY_S and warn is not None:
        warn("--period-ms {:g} is longer than a Joulescope stream is kept in memory for ({:g} s holds periods up to "
             "{:g} ms): energy per period will be reported as unknown; give a shorter --period-ms".format(
                 period_ms, MAX_STREAM_HISTORY_S, (MAX_STREAM_HISTORY_S - 30.0) / 1.5 * 1e3))
    return min(needed, MAX_STREAM_HISTORY_S)



def cost_model_for(brun: BoardRun, bundle: Any, threads: int, profile: Optional[Path] = None,
                   warn: Any = None) -> CostModel:
    """The planner's knowledge of the board: ``profile`` if given, else the default profile file of this
    bundle and board if `edgeexit profile` wrote one, else the board model."""
    physics = brun.physics or board_physics(brun.session, threads)
    model = PhysicsCostModel(physics, bundle)
    path = profile
    if path is None:
        candidate = default_profile_path(bundle, brun.session.board.name, brun.simulated, threads)
        path = candidate if candidate.is_file() else None
    if path is None:
        note = other_threads_note(bundle, brun.session.board.name, brun.simulated, threads)
        if note and warn is not None:  # the README's `profile --threads 4`, then a 1-thread run
            warn(note)
        return model
    return load_profile_json(path, bundle, brun.session.board.name, fallback=model, threads=threads,
                             board_khz=brun.session.controller.cpu_opps_khz(), simulated=brun.simulated)


def attach_planner(brun: BoardRun, mode: str, runtime: Any, policy: Any, cost: CostModel,
                   deadline_ms: Optional[float], period_ms: Optional[float], governor: Optional[str] = None,
                   warn: Optional[Callable[[str], None]] = None, emulate: Optional[bool] = None) -> Any:
    """Create the DVFS planner for this run (``mode`` from --dvfs) and make the probe follow it; ``governor``:
    the one the governor mode emulates (default: the board's default governor); ``warn``: the run's warnings;
    ``emulate``: whether the governor mode emulates one (default: on a simulated board; a real one's runs)."""
    from edgeexit.planner import DvfsPlanner

    ctl = brun.session.controller
    elapsed = brun.probe.elapsed_ms if isinstance(brun.probe, SimulatedBoardProbe) else None
    table = ctl.cpu_opps_khz()
    planner = DvfsPlanner(
        mode, cost, runtime, policy, ctl.set_cpu_khz, start_khz=ctl.cpu_khz(), deadline_ms=deadline_ms,
        period_ms=period_ms, elapsed_ms=elapsed, governor=governor or brun.session.profile.cpu.default_governor,
        emulate_governor=brun.simulated if emulate is None else emulate, cap_khz=ctl.cpu_cap_khz(), read_cap_khz=ctl.cpu_cap_khz,
        not_honoured=lambda: ctl.honour_events, cpuinfo_khz=(table[0], table[-1]),
        read_floor_khz=ctl.cpu_floor_khz,
        read_reserve_ms=brun.probe.read_reserve_ms if isinstance(brun.probe, MeterProbe) else None,
        between=ctl.refresh_firmware_khz, warn=warn,
    )
    brun.planner = planner
    if isinstance(brun.probe, SimulatedBoardProbe):
        brun.probe.settle()  # the planner's pin made before the run is no transition of inference 0
    return planner

