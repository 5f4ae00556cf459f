"""Profiling a bundle on a board: latency (and energy) of every block and exit head at every CPU OPP.

The library behind ``edgeexit profile``. :func:`profile_bundle` pins each CPU operating point through
the open board session's DVFS controller and fills the ``edgeexit-profile/1`` format that
:func:`edgeexit.costmodel.load_profile_json` reads (see that module's docstring for the format).

* Simulated board: latency and energy of each segment come from :class:`BoardPhysics` at the
  operating point the simulated kernel reports after pinning; the host clock is never used.
* Real board: the OPPs are swept ``passes`` times, ascending, then descending, and so on, so that a
  board warming up through the profile (leakage power grows with temperature) biases neither end of
  the table; each pass reads the thermal zones after each OPP (``temperature_mc``, the hottest zone,
  and a note where one reached its limit, where the kernel may throttle), and ``pass_spread`` is how
  much each OPP's latency of all segments differed between passes; a pass whose clock read back
  otherwise than the first's is left out at that OPP. Each segment's ``invoke()`` is timed on
  the host, in a loop of at least ``repeats`` invokes and ``energy_window_s`` (the median over all
  passes' invokes is kept). With ``cool_below_c``, each pass begins only once the hottest thermal zone
  reads at most that, waiting at the lowest clock (a board still hot from earlier work otherwise
  profiles its first pass throttled or leaky). With a power meter (a running :class:`~edgeexit.energy.sampler.Sampler`)
  the segment is invoked in a loop inside one meter window lasting at least ``energy_window_s`` and at least ``INSIDE_READS``
  of the meter's read intervals; the window's power is the mean of the meter's reads taken inside
  it (a polled meter's edge reads are taken between loads: interpolating between them put 12-14% of
  the busy power, and on a slow Pi 5 PMIC all of it, at idle), and a window with fewer than
  ``MIN_INSIDE_READS`` good reads inside is measured again, then left out of that pass. Energy per
  segment is that power times the segment's median invoke time, busy power is the time-weighted mean
  over all segment windows at that OPP, and idle power is the mean over a ``idle_window_s`` sleep at
  that OPP, taken before the segments there; each is the mean over the passes that measured it, and a
  window no pass measured nulls the power columns. Without a meter the energy fields are null and a
  note says so.

The demo runtime runs every segment on the CPU (no GPU delegate), so GPU DVFS cannot change a
segment's latency or energy: the GPU's table is recorded, not swept, and the profile says why.
"""
from __future__ import annotations

import datetime
import json
import statistics
import time
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edgeexit.bundle import Bundle, manifest_sha256
from edgeexit.bundle.fileio import replace_file, replace_target
from edgeexit.costmodel import PROFILE_SCHEMA, SegmentLatency
from edgeexit.energy.busy_idle import CONVERSION_SPAN
from edgeexit.errors import ProfileError
from edgeexit.jsonvalues import is_finite_number
from edgeexit.paths import writable_output
from edgeexit.probes import board_meter, board_physics  # noqa: F401  (board_meter re-exported: profile, status, tests)

GPU_NOT_SWEPT = (
    "GPU DVFS not exercised: the runtime runs every int8 segment on the CPU (TFLite CPU kernels, no GPU "
    "delegate), so the GPU operating point changes neither segment latency nor energy; the GPU was left "
    "at its current setting"
)

Progress = Callable[[int], None]

# A window is measured again when it has no valid samples (the sampler thread starved by the invoke loop, a
# transient read error): one bad window would otherwise null the profile's whole power columns.
WINDOW_ATTEMPTS = 3
COOL_POLL_S = 1.0  # how often a pass waiting for the board to cool reads the thermal zones
COOL_MAX_C = 150.0  # beyond every zone's trip points: a wait for that is a typo
PASS_SPREAD_NOTE = 0.10  # an OPP whose latency of all segments differs more than this between passes is noted
INSIDE_READS = 10  # a segment's loop lasts at least this many of the meter's read intervals
MIN_INSIDE_READS = 3  # good reads inside a window for its power to count


def conversion_lag_s(sampler: Any) -> float:
    """How long before a read its value may come from (an INA3221 on hwmon returns its last finished
    conversion: busy_idle.CONVERSION_SPAN update intervals); 0 for a meter that reads the present."""
    return float(getattr(sampler.meter, "conversion_lag_s", 0.0) or 0.0) * CONVERSION_SPAN


def window_power_mw(sampler: Any, w: Any) -> Optional[float]:
    """Mean power over window ``w``: of a polled meter's good reads inside it (None with fewer than
    MIN_INSIDE_READS), or a streaming meter's own integral; None for a window the meter could not cover.
    Reads in the window's first conversion lag are left out: their values may come from before it (the
    previous window's load), which took ~4% off a segment's busy power at a 7 ms INA3221 interval."""
    if not w.valid:
        return None
    # a loop is many reads long: edge-straddlers left out
    inside = sampler.inside_mw(w.t0_s + conversion_lag_s(sampler), w.t1_s)
    if inside is None:
        return float(w.mean_power_mw)
    return statistics.mean(inside) if len(inside) >= MIN_INSIDE_READS else None


def segment_inputs(runtime: Any, sample_q: np.ndarray) -> Dict[str, np.ndarray]:
    """The input tensor of every block and exit head for one quantized sample (all heads evaluated),
    so each segment can be invoked alone on realistic activations."""
    out: Dict[str, np.ndarray] = {}
    h = sample_q
    for k, seg in enumerate(runtime.blocks):
        rq = runtime.block_requant[k]
        x = h if rq is None else rq(h)
        out[seg.spec.label] = x
        h = seg.run(x)
        e = runtime.exit_of_block[k]
        if e >= 0:
            head = runtime.exits[e]
            rq = runtime.exit_requant[e]
            hx = h if rq is None else rq(h)
            out[head.spec.label] = hx
            head.run(hx)
    return out


def _segments(runtime: Any) -> List[Any]:
    return list(runtime.blocks) + list(runtime.exits)


def _utc_now() -> str:
    return datetime.datetime.utcnow().replace(microsecond=0).isoformat() + "Z"


def _gpu_entry(session: Any) -> Dict[str, Any]:
    ctl = session.controller
    opps = ctl.gpu_opps_hz() if ctl.gpu is not None else []
    if not opps:
        return {"opps_hz": [], "exercised": False, "why": "board {} has no GPU devfreq node".format(session.board.name)}
    return {"opps_hz": list(opps), "exercised": False, "why": GPU_NOT_SWEPT}


def profile_bundle(
    bundle: Bundle,
    session: Any,
    runtime: Any,
    threads: int = 1,
    repeats: int = 5,
    sampler: Any = None,
    passes: int = 2,
    on_progress: Optional[Progress] = None,
    energy_window_s: float = 0.05,
    idle_window_s: float = 0.25,
    settle_s: float = 0.02,
    sample_q: Optional[np.ndarray] = None,
    cool_below_c: Optional[float] = None,
    cool_timeout_s: float = 600.0,
    on_cooling: Optional[Callable[[str, float], None]] = None,
    cool_poll_s: float = COOL_POLL_S,
) -> Dict[str, Any]:
    """Profile every segment of ``bundle`` at every CPU OPP of the open board ``session``.

    ``runtime`` is a :class:`~edgeexit.runtime.Runtime` over ``bundle`` opened with ``threads``
    interpreter threads. ``sampler`` (real boards only) is a started power-meter Sampler or None.
    ``passes`` (real boards) sweeps the OPPs that many times, alternately ascending and descending.
    ``on_progress(n)`` is called once per (pass, operating point, segment). ``cool_below_c`` (real boards)
    makes each pass wait, at the lowest clock, until the hottest thermal zone reads at most that many °C,
    for at most ``cool_timeout_s``; ``on_cooling(zone, temp_c)`` is called when a wait begins. Returns the profile dict
    (``edgeexit-profile/1``); the session's context manager restores the board's clocks.
    """
    if repeats < 1:
        raise ProfileError("--repeats must be at least 1, not {}".format(repeats))
    if passes < 1:
        raise ProfileError("--passes must be at least 1, not {}".format(passes))
    if cool_below_c is not None and not (is_finite_number(cool_below_c) and 0 < cool_below_c < COOL_MAX_C):
        raise ProfileError("--cool-below-c must be a temperature in °C between 0 and {:g}, not {!r}".format(
            COOL_MAX_C, cool_below_c))
    if not (is_finite_number(cool_timeout_s) and cool_timeout_s >= 0):
        raise ProfileError("--cool-timeout-s must be a number of seconds >= 0, not {!r}".format(cool_timeout_s))
    ctl = session.controller
    opps = ctl.cpu_opps_khz()
    if not opps:
        raise ProfileError("board {} lists no CPU operating points under {}; check `edgeexit status`".format(
            session.board.name, session.root))
    if sample_q is None:
        from edgeexit.bundle.data import quantize_inputs

        split = bundle.split("evaluation").take(1)
        sample_q = quantize_inputs(split.x, bundle.manifest.input)[0]
    inputs = segment_inputs(runtime, sample_q)  # also proves every segment loads and runs
    segs = _segments(runtime)
    notes: List[str] = []
    data: Dict[str, Any] = {
        "schema": PROFILE_SCHEMA,
        "board": session.board.name,
        "simulated": bool(session.simulated),
        "model": bundle.name,
        "manifest_sha256": manifest_sha256(bundle),
        "threads": int(threads),
        "interpreter": "{} {}".format(runtime.backend.name, runtime.backend.version),
        "cpu_opps_khz": list(opps),
        "gpu_dvfs": _gpu_entry(session),
        "created": _utc_now(),
    }
    effective: List[int] = []
    if session.simulated:
        physics = board_physics(session, threads)
        lat = {s.spec.label: [] for s in segs}  # type: Dict[str, List[float]]
        energy = {s.spec.label: [] for s in segs}  # type: Dict[str, List[float]]
        busy: List[float] = []
        idle: List[float] = []
        for f in opps:
            eff = ctl.set_cpu_khz(f)
            effective.append(eff)
            for s in segs:
                macs = s.spec.macs
                lat[s.spec.label].append(round(physics.segment_s(macs, eff) * 1e3, 9))
                energy[s.spec.label].append(round(physics.segment_energy_mj(macs, eff), 9))
                if on_progress is not None:
                    on_progress(1)
            busy.append(round(physics.power(eff, True).total_mw, 6))
            idle.append(round(physics.idle_mw(eff), 6))
        notes.append("SIMULATED: latency and energy come from the board model ({}), not from the host clock "
                     "or a meter".format(session.profile.source.name))
        data.update({"latency_source": "simulated", "energy_source": "simulated",
                     "transition_ms": physics.transition_s * 1e3, "repeats": 1, "passes": 1,
                     "pass_spread": None, "temperature_mc": None, "cooling": None,
                     "busy_power_mw": busy, "idle_power_mw": idle})
        data["segments"] = {s.spec.label: {"macs": s.spec.macs, "latency_ms": lat[s.spec.label],
                                           "energy_mj": energy[s.spec.label]} for s in segs}
    else:
        cooling = None
        if cool_below_c is not None:
            if not _hottest(session):
                raise ProfileError("--cool-below-c needs a thermal zone to read, and board {} gave none under {}; check "
                                   "`edgeexit status`, or leave --cool-below-c out".format(session.board.name, session.root))
            cooling = _Cooling(session, opps[0], cool_below_c, cool_timeout_s, cool_poll_s, on_cooling)
        data.update(_measure_real(session, segs, inputs, opps, effective, repeats, passes, sampler, on_progress,
                                  energy_window_s, idle_window_s, settle_s, notes, cooling))
        data["transition_ms"] = session.profile.cpu.transition_latency_ns / 1e6
        notes.append("transition_ms is the firmware profile's transition latency, not a measurement")
    data["effective_cpu_khz"] = effective
    notes.extend(_not_honoured_notes(ctl, opps, effective))
    data["notes"] = notes + [data["gpu_dvfs"]["why"]]
    return data


def _not_honoured_notes(ctl: Any, opps: List[int], effective: List[int]) -> List[str]:
    """One note per clock that ran in place of others (a firmware floor, a cap), with where it was read."""
    ran = {}  # type: Dict[int, List[int]]
    for f, eff in zip(opps, effective):
        if eff != f:
            ran.setdefault(eff, []).append(f)
    sources = sorted({e.source for e in ctl.honour_events if e.domain == ctl.cpus[0].name})
    where = "read back from {}".format(" and ".join(sources)) if sources else "read back"
    return ["operating points {} kHz ran at {} kHz ({}): the firmware did not follow the request, "
            "so their columns are {}'s".format(", ".join(str(f) for f in asked), eff, where, eff)
            for eff, asked in sorted(ran.items())]


def host_segment_latency(runtime: Any, sample_q: np.ndarray, repeats: int = 30, min_s: float = 0.01) -> SegmentLatency:
    """Median invoke latency of every segment on this host, on one sample's real activations."""
    inputs = segment_inputs(runtime, sample_q)
    ms = {seg.spec.label: float(np.median(_time_loop(seg, inputs[seg.spec.label], repeats, min_s))) / 1e6
          for seg in _segments(runtime)}
    return SegmentLatency(ms, "measured on this host ({} {}; median invoke of each segment)".format(
        runtime.backend.name, runtime.backend.version))


def _warm_up(seg: Any, x: np.ndarray) -> None:
    # the first invoke after a frequency change allocates and faults pages in
    seg.set_tensor(seg.in_index, x)
    seg.invoke()


def _time_loop(seg: Any, x: np.ndarray, repeats: int, min_s: float, warm_up: bool = True) -> List[int]:
    """Invoke ``seg`` on ``x`` at least ``repeats`` times and for at least ``min_s``; ns per invoke."""
    if warm_up:
        _warm_up(seg, x)
    times: List[int] = []
    t_end = perf_counter_ns() + int(min_s * 1e9)
    while len(times) < repeats or perf_counter_ns() < t_end:
        seg.set_tensor(seg.in_index, x)
        t0 = perf_counter_ns()
        seg.invoke()
        times.append(perf_counter_ns() - t0)
    return times


def _sweep(n: int, passes: int) -> List[Tuple[int, int]]:
    """(pass, column) in profiling order: ascending, then descending, and so on, so that a board warming up
    through the profile weighs on neither end of the table."""
    cols = list(range(n))
    return [(p, c) for p in range(passes) for c in (cols if p % 2 == 0 else cols[::-1])]


def _metered(sampler: Any, key: str, body: Callable[[], Any],
             before: Optional[Callable[[], None]] = None) -> Tuple[Optional[float], Any, float]:
    """Run ``body`` inside a meter window, again (up to ``WINDOW_ATTEMPTS`` times, ``before`` each time, outside
    the window) until the window has enough good reads: (its mean power or None, what ``body`` returned last,
    the window's length in s)."""
    result = None
    for attempt in range(WINDOW_ATTEMPTS):
        if before is not None:
            before()
        window_key = "{}-{}".format(key, attempt)
        sampler.begin_window(window_key)
        result = body()
        w = sampler.end_window(window_key)
        power = window_power_mw(sampler, w)
        if power is not None:
            return power, result, w.duration_s
    return None, result, 0.0


def _hottest(session: Any) -> List[Any]:
    """The board's thermal zones read now (the session's guard's readings) that gave a temperature, PMIC zones
    left out: the Nano's PMIC-Die reads a fixed 100 °C, which would be every point's hottest."""
    guard = getattr(session, "guard", None)
    if guard is None:
        return []
    return [r for z, r in zip(guard.board.thermal_zones, guard.read()) if z.role != "pmic" and r.temp_mc is not None]


class _Cooling:
    """Waits before each pass, pinned at the lowest clock, until the hottest thermal zone reads at most
    ``below_c``; what each pass began at is kept for the profile."""

    def __init__(self, session: Any, lowest_khz: int, below_c: float, timeout_s: float, poll_s: float,
                 on_cooling: Optional[Callable[[str, float], None]]) -> None:
        self.session, self.lowest_khz, self.below_c = session, lowest_khz, float(below_c)
        self.timeout_s, self.poll_s, self.on_cooling = float(timeout_s), float(poll_s), on_cooling
        self.start_mc = []  # type: List[Optional[int]]
        self.waited_s = []  # type: List[float]

    def wait(self) -> None:
        t0 = time.monotonic()
        pinned = False
        while True:
            zones = _hottest(self.session)
            hottest = max(zones, key=lambda z: z.temp_mc) if zones else None
            if hottest is None or hottest.temp_mc <= self.below_c * 1000:
                # a zone that stopped answering cannot hold the profile up; the pass records what it read
                self.start_mc.append(None if hottest is None else int(hottest.temp_mc))
                self.waited_s.append(round(time.monotonic() - t0, 3))
                return
            waited_s = time.monotonic() - t0
            if waited_s >= self.timeout_s:
                raise ProfileError("thermal zone {} still reads {:.1f} °C after {:g} s at the lowest clock, above "
                                   "--cool-below-c {:g}; let the board cool or add cooling, or raise --cool-below-c "
                                   "or --cool-timeout-s".format(hottest.zone, hottest.temp_mc / 1000.0, self.timeout_s,
                                                                self.below_c))
            if not pinned:
                self.session.controller.set_cpu_khz(self.lowest_khz)  # the least heat while it waits
                pinned = True
                if self.on_cooling is not None:
                    self.on_cooling(hottest.zone, hottest.temp_mc / 1000.0)
            time.sleep(min(self.poll_s, max(0.0, self.timeout_s - waited_s)))

    def record(self) -> Dict[str, Any]:
        return {"below_c": self.below_c, "pass_start_mc": self.start_mc, "waited_s": self.waited_s}


def _measure_real(session: Any, segs: List[Any], inputs: Dict[str, np.ndarray], opps: List[int],
                  effective: List[int], repeats: int, passes: int, sampler: Any, on_progress: Optional[Progress],
                  energy_window_s: float, idle_window_s: float, settle_s: float,
                  notes: List[str], cooling: Optional[_Cooling] = None) -> Dict[str, Any]:
    ctl = session.controller
    n = len(opps)
    labels = [s.spec.label for s in segs]
    times = {label: [[] for _ in opps] for label in labels}  # type: Dict[str, List[List[int]]]
    power_mw = {label: [[] for _ in opps] for label in labels}  # type: Dict[str, List[List[float]]]  # per pass
    busy = [[0.0, 0.0] for _ in opps]  # mW*s and s of every segment window at each OPP
    idle = [[] for _ in opps]  # type: List[List[float]]
    pass_ms = [[] for _ in opps]  # type: List[List[float]]  # each pass's sum of every segment's median
    hottest = [None] * n  # type: List[Optional[int]]
    ran = [None] * n  # type: List[Optional[int]]
    moved = []  # type: List[str]
    hot = {}  # type: Dict[str, Tuple[int, int, int]]  # zone -> (peak m°C, its limit, at kHz)
    for i, (p, col) in enumerate(_sweep(n, passes)):
        if cooling is not None and i % n == 0:
            cooling.wait()
        f = opps[col]
        eff = ctl.set_cpu_khz(f)
        if ran[col] is None:
            ran[col] = eff
        elif eff != ran[col]:  # another clock's figures would mix into this column: this pass is left out
            moved.append("{} kHz ran at {} kHz in pass 1 and {} kHz in pass {}".format(f, ran[col], eff, p + 1))
            if on_progress is not None:
                on_progress(len(segs))
            continue
        time.sleep(settle_s)  # let the governor's write land before timing
        if sampler is not None:
            # idle first: the segments' heat would otherwise read as idle power
            idle_s = max(idle_window_s, INSIDE_READS * sampler.sample_interval_s() + conversion_lag_s(sampler))
            power, _, _ = _metered(sampler, "profile-idle-{}-{}".format(f, p), lambda: time.sleep(idle_s))
            if power is not None:
                idle[col].append(power)
        full_ms = 0.0
        for s in segs:
            label, x = s.spec.label, inputs[s.spec.label]
            if sampler is not None:
                loop_s = max(energy_window_s, INSIDE_READS * sampler.sample_interval_s() + conversion_lag_s(sampler))
                # the warm-up invoke lies outside the window: it is not one of the timed invokes
                power, t, length_s = _metered(sampler, "profile-{}-{}-{}".format(f, label, p),
                                              lambda: _time_loop(s, x, repeats, loop_s, warm_up=False),
                                              before=lambda: _warm_up(s, x))
                if power is not None:
                    power_mw[label][col].append(power)
                    busy[col][0] += power * length_s
                    busy[col][1] += length_s
            else:  # as long as a metered loop: a median of a few invokes of 10 us moved 30% between passes
                t = _time_loop(s, x, repeats, energy_window_s)
            times[label][col].extend(t)
            full_ms += statistics.median(t) / 1e6
            if on_progress is not None:
                on_progress(1)
        pass_ms[col].append(full_ms)
        for z in _hottest(session):
            hottest[col] = z.temp_mc if hottest[col] is None else max(hottest[col], z.temp_mc)
            if z.over and z.temp_mc > hot.get(z.zone, (0, 0, 0))[0]:
                hot[z.zone] = (z.temp_mc, z.limit_mc, f)
    effective.extend(int(f) for f in ran)  # type: ignore[arg-type]
    spread = [round((max(v) - min(v)) / min(v), 4) if len(v) > 1 and min(v) > 0 else None for v in pass_ms]
    out = {"latency_source": "host", "repeats": repeats, "passes": passes,
           "pass_spread": spread if passes > 1 else None, "temperature_mc": hottest,
           "cooling": None if cooling is None else cooling.record()}  # type: Dict[str, Any]
    _sweep_notes(opps, spread, moved, hot, notes)
    if cooling is not None:
        notes.append("each pass began once the hottest thermal zone read at most {:g} °C (waited {:.1f} s in all, at "
                     "{} kHz)".format(cooling.below_c, sum(cooling.waited_s), cooling.lowest_khz))
    lat = {label: [round(statistics.median(v) / 1e6, 9) for v in times[label]] for label in labels}
    if sampler is None:
        notes.append("no power meter: energy_mj, busy_power_mw and idle_power_mw are null (latency only); "
                     "`edgeexit run --profile` takes power from the board model")
        out.update({"energy_source": None, "busy_power_mw": None, "idle_power_mw": None})
        out["segments"] = {s.spec.label: {"macs": s.spec.macs, "latency_ms": lat[s.spec.label], "energy_mj": None}
                           for s in segs}
        return out
    source = getattr(sampler.meter, "source", None) or getattr(sampler.meter, "name", "meter")
    out["energy_source"] = source
    # What the meter's total covers (the Pi 5 PMIC's rails miss the 5 V input): the planner takes it as board power.
    out["energy_basis"] = getattr(sampler.meter, "total_basis", None)
    out["segments"] = {}
    for s in segs:
        # Mean power while looping, times the median invoke (the latency column): the window also holds each
        # loop's set_tensor and timer reads, as long as a small head's invoke itself, so dividing its energy by
        # the invokes overstated a segment's energy up to 2.8x.
        pw = power_mw[s.spec.label]
        out["segments"][s.spec.label] = {
            "macs": s.spec.macs, "latency_ms": lat[s.spec.label],
            "energy_mj": None if not all(pw) else [round(statistics.mean(v) * ms / 1e3, 9)
                                                   for v, ms in zip(pw, lat[s.spec.label])]}
    # A window counts as measured when some pass measured it; one no pass measured nulls its power columns.
    invalid = [(opps[c], "idle") for c in range(n) if not idle[c]] + [
        (opps[c], label) for label in labels for c in range(n) if not power_mw[label][c]]
    if invalid:
        # A partly measured power column would mislead the planner: drop the columns, keep latency.
        notes.append("the meter gave fewer than {} good reads inside {} window(s) in {} attempts each in every pass "
                     "(first: {} kHz {}); busy/idle power left null".format(
                         MIN_INSIDE_READS, len(invalid), WINDOW_ATTEMPTS, invalid[0][0], invalid[0][1]))
        out.update({"busy_power_mw": None, "idle_power_mw": None})
    else:
        out.update({"busy_power_mw": [round(e / t, 6) for e, t in busy],
                    "idle_power_mw": [round(statistics.mean(v), 6) for v in idle]})
    notes.append("energy per segment: the mean of the meter's reads inside a loop of invokes lasting >= {:.0f} ms "
                 "(and >= {} read intervals), times the median invoke; idle power: the mean of its reads inside a "
                 ">= {:.0f} ms sleep at each OPP, before its segments; each the mean over {} pass(es)".format(
                     energy_window_s * 1e3, INSIDE_READS, idle_window_s * 1e3, passes))
    return out


def _sweep_notes(opps: List[int], spread: List[Optional[float]], moved: List[str],
                 hot: Dict[str, Tuple[int, int, int]], notes: List[str]) -> None:
    """What the passes and the thermal zones say about the profile's trust."""
    worst = max(((v, f) for v, f in zip(spread, opps) if v is not None), default=None)
    if worst is not None and worst[0] > PASS_SPREAD_NOTE:
        notes.append("the latency of all segments at {} kHz differed by {:.1%} between passes (ascending, then "
                     "descending): something else ran, or the board throttled; profile again on an idle, cool "
                     "board".format(worst[1], worst[0]))
    if moved:
        notes.append("the firmware ran some operating points at other clocks in later passes ({}): a cap moved "
                     "during the profile, and those passes were left out there".format("; ".join(moved)))
    for zone, (temp, limit, khz) in sorted(hot.items()):
        notes.append("thermal zone {} reached {} m°C, at or over its limit of {} m°C, at {} kHz: the kernel may have "
                     "throttled the clock, so the figures there are suspect; let the board cool or add cooling, "
                     "and profile again".format(zone, temp, limit, khz))


def inference_table(data: Dict[str, Any], labels: List[str]) -> List[Dict[str, Any]]:
    """Per OPP: latency and energy of running ``labels`` in sequence (e.g. every block + the final head)."""
    rows = []
    segs = data["segments"]
    for i, f in enumerate(data["cpu_opps_khz"]):
        lat = sum(segs[l]["latency_ms"][i] for l in labels)
        known = all(segs[l]["energy_mj"] is not None and segs[l]["energy_mj"][i] is not None for l in labels)
        e = sum(segs[l]["energy_mj"][i] for l in labels) if known else None
        busy = data["busy_power_mw"][i] if data.get("busy_power_mw") else None
        idle = data["idle_power_mw"][i] if data.get("idle_power_mw") else None
        rows.append({"cpu_khz": f, "latency_ms": lat, "energy_mj": e, "busy_power_mw": busy, "idle_power_mw": idle})
    return rows


def _write_failed(path: Path) -> Callable[[str], ProfileError]:
    return lambda why: ProfileError("cannot write the profile to {} ({}); pass --out FILE naming a regular file "
                                    "somewhere writable".format(path, why))


def check_output(path: Path) -> Path:
    """Fail before any profiling when the profile cannot be written to ``path`` (parents created): also when
    ``path`` is a directory, a device or a FIFO (see :func:`replace_target`: a symlink's target is checked)."""
    target = replace_target(path, _write_failed(path))
    writable_output(target, "the profile", "--out FILE")
    return Path(path)


def write_profile(data: Dict[str, Any], path: Path) -> Path:
    """Write the profile as JSON (parents created), atomically: a reader never sees half a profile. A symlink
    is written through to its target; errors name the fix."""
    replace_file(path, json.dumps(data, indent=1, sort_keys=True) + "\n", _write_failed(path))
    return Path(path)
