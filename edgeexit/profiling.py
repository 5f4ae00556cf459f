"""Profiling a bundle on a board: latency (and energy) of every block and exit head at every CPU OPP.

The library behind ``edgeexit profile``. :func:`profile_bundle` pins each CPU operating point through
the open board session's DVFS controller and fills the ``edgeexit-profile/1`` format that
:func:`edgeexit.costmodel.load_profile_json` reads (see that module's docstring for the format).

* Simulated board: latency and energy of each segment come from :class:`BoardPhysics` at the
  operating point the simulated kernel reports after pinning; the host clock is never used.
* Real board: each segment's ``invoke()`` is timed on the host (median of ``repeats``). With a
  power meter (a running :class:`~edgeexit.energy.sampler.Sampler`) the segment is invoked in a
  loop inside one meter window lasting at least ``energy_window_s`` and at least ``INSIDE_READS``
  of the meter's read intervals; the window's power is the mean of the meter's reads taken inside
  it (a polled meter's edge reads are taken between loads: interpolating between them put 12-14% of
  the busy power, and on a slow Pi 5 PMIC all of it, at idle), and a window with fewer than
  ``MIN_INSIDE_READS`` good reads inside is measured again, then left null. Energy per segment is that
  power times the segment's median invoke time, busy power is the time-weighted mean over all segment
  windows at that OPP, and idle power is the mean over a ``idle_window_s`` sleep at that OPP, taken
  before the segments there. Without a meter the energy fields are null and a note says so.

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
from edgeexit.errors import ProfileError
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
INSIDE_READS = 10  # a segment's loop lasts at least this many of the meter's read intervals
MIN_INSIDE_READS = 3  # good reads inside a window for its power to count


def window_power_mw(sampler: Any, w: Any) -> Optional[float]:
    """Mean power over window ``w``: of a polled meter's good reads inside it (None with fewer than
    MIN_INSIDE_READS), or a streaming meter's own integral; None for a window the meter could not cover."""
    if not w.valid:
        return None
    inside = sampler.inside_mw(w.t0_s, w.t1_s)  # a loop is many reads long: edge-straddlers left out
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
    on_progress: Optional[Progress] = None,
    energy_window_s: float = 0.05,
    idle_window_s: float = 0.25,
    settle_s: float = 0.02,
    sample_q: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """Profile every segment of ``bundle`` at every CPU OPP of the open board ``session``.

    ``runtime`` is a :class:`~edgeexit.runtime.Runtime` over ``bundle`` opened with ``threads``
    interpreter threads. ``sampler`` (real boards only) is a started power-meter Sampler or None.
    ``on_progress(n)`` is called once per (operating point, segment). Returns the profile dict
    (``edgeexit-profile/1``); the session's context manager restores the board's clocks.
    """
    if repeats < 1:
        raise ProfileError("--repeats must be at least 1, not {}".format(repeats))
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
                     "transition_ms": physics.transition_s * 1e3, "repeats": 1,
                     "busy_power_mw": busy, "idle_power_mw": idle})
        data["segments"] = {s.spec.label: {"macs": s.spec.macs, "latency_ms": lat[s.spec.label],
                                           "energy_mj": energy[s.spec.label]} for s in segs}
    else:
        data.update(_measure_real(session, segs, inputs, opps, effective, repeats, sampler, on_progress,
                                  energy_window_s, idle_window_s, settle_s, notes))
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
    sources = sorted({e.source for e in ctl.honour_events if e.domain == ctl.cpus[0].name}) or ["the read-back"]
    return ["operating points {} kHz ran at {} kHz (read back from {}): the firmware did not follow the request, "
            "so their columns are {}'s".format(", ".join(str(f) for f in asked), eff, " and ".join(sources), eff)
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


def _measure_real(session: Any, segs: List[Any], inputs: Dict[str, np.ndarray], opps: List[int],
                  effective: List[int], repeats: int, sampler: Any, on_progress: Optional[Progress],
                  energy_window_s: float, idle_window_s: float, settle_s: float,
                  notes: List[str]) -> Dict[str, Any]:
    ctl = session.controller
    lat = {s.spec.label: [] for s in segs}  # type: Dict[str, List[float]]
    energy = {s.spec.label: [] for s in segs}  # type: Dict[str, List[Optional[float]]]
    busy: List[Optional[float]] = []
    idle: List[Optional[float]] = []
    invalid: List[Tuple[int, str]] = []
    for f in opps:
        effective.append(ctl.set_cpu_khz(f))
        time.sleep(settle_s)  # let the governor's write land before timing
        busy_e = busy_t = 0.0
        if sampler is not None:
            # idle first: the segments' heat would otherwise read as idle power
            power = None
            for attempt in range(WINDOW_ATTEMPTS):
                key = "profile-idle-{}-{}".format(f, attempt)
                sampler.begin_window(key)
                time.sleep(max(idle_window_s, INSIDE_READS * sampler.sample_interval_s()))
                power = window_power_mw(sampler, sampler.end_window(key))
                if power is not None:
                    break
            idle.append(None if power is None else round(power, 6))
            if power is None:
                invalid.append((f, "idle"))
        for s in segs:
            label = s.spec.label
            if sampler is not None:
                for attempt in range(WINDOW_ATTEMPTS):
                    key = "profile-{}-{}-{}".format(f, label, attempt)
                    _warm_up(s, inputs[label])  # outside the window: it is not one of the timed invokes
                    sampler.begin_window(key)
                    loop_s = max(energy_window_s, INSIDE_READS * sampler.sample_interval_s())
                    times = _time_loop(s, inputs[label], repeats, loop_s, warm_up=False)
                    w = sampler.end_window(key)
                    power = window_power_mw(sampler, w)
                    if power is not None:
                        break
                if power is not None:
                    # Mean power while looping, times the median invoke (the latency column): the window also
                    # holds each pass's set_tensor and timer reads, as long as a small head's invoke itself,
                    # so dividing its energy by the invokes overstated a segment's energy up to 2.8x.
                    energy[label].append(round(power * statistics.median(times) / 1e9, 9))
                    busy_e += power * w.duration_s
                    busy_t += w.duration_s
                else:
                    energy[label].append(None)
                    invalid.append((f, label))
            else:
                times = _time_loop(s, inputs[label], repeats, 0.0)
            lat[label].append(round(statistics.median(times) / 1e6, 9))
            if on_progress is not None:
                on_progress(1)
        if sampler is not None:
            busy.append(round(busy_e / busy_t, 6) if busy_t > 0 else None)
    out: Dict[str, Any] = {"latency_source": "host", "repeats": repeats}
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
        e = energy[s.spec.label]
        out["segments"][s.spec.label] = {"macs": s.spec.macs, "latency_ms": lat[s.spec.label],
                                         "energy_mj": None if any(v is None for v in e) else e}
    if invalid or any(v is None for v in busy + idle):
        # A partly measured power column would mislead the planner: drop the columns, keep latency.
        notes.append("the meter gave fewer than {} good reads inside {} window(s) in {} attempts each (first: {} kHz {}); "
                     "busy/idle power left null".format(MIN_INSIDE_READS, len(invalid), WINDOW_ATTEMPTS, invalid[0][0] if invalid else "?",
                                                         invalid[0][1] if invalid else "?"))
        out.update({"busy_power_mw": None, "idle_power_mw": None})
    else:
        out.update({"busy_power_mw": busy, "idle_power_mw": idle})
    notes.append("energy per segment: the mean of the meter's reads inside a loop of invokes lasting >= {:.0f} ms "
                 "(and >= {} read intervals), times the median invoke; idle power: the mean of its reads inside a "
                 ">= {:.0f} ms sleep at each OPP, before its segments".format(
                     energy_window_s * 1e3, INSIDE_READS, idle_window_s * 1e3))
    return out


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
