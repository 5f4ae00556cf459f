"""Background sampling of a :class:`PowerMeter` and integration of power over host-time windows.

Integration method (also returned in ``EnergyWindow.method``): power is linearly interpolated
between valid samples and integrated exactly over ``[t0, t1]`` (trapezoids with the window edges
as extra knots). A window shorter than the sampling period therefore gets the interpolated power
times its duration. Beyond the first/last sample power is held constant, but only up to
``max_gap_s`` (default two sampling periods; for a meter whose reads take longer than that, such as
the Pi 5 PMIC's forked ``vcgencmd``, two typical reads, at most 0.25 s, with one warning): a window
whose start or end lies further than that from a valid sample is ``valid=False``. Invalid samples
(failed reads) are dropped and the gap is bridged by interpolation, so one bad read neither crashes
nor biases a window; but a window with any instant further than ``max_gap_s`` from a valid sample
(an outage inside it: consecutive valid samples more than twice that apart) is ``valid=False`` too.

``begin_window``/``end_window`` take a synchronous sample just before the start and just after the
end (``sync_edges=True``), so every keyed window is bracketed by samples even when it is much
shorter than the sampling period; that read happens outside the window it measures, so it reads the
board as it is between loads. The periodic reads keep their own schedule, which an edge's read does
not move, and each interval is drawn between half and one and a half periods: back-to-back windows
used to push every periodic read out, leaving only edge reads, none inside any window, and a fixed
grid can lock onto a periodic load's phase. What a load drew is therefore told by the reads taken
inside its windows (counted by midpoint as they arrive from :meth:`Sampler.valid_mw`, as
:class:`~edgeexit.probes.MeterProbe` does; read wholly inside long ones, :meth:`Sampler.inside_mw`), not by interpolating a window shorter than the sampling
period between the idle reads around it. With ``edge_reads=False`` (what runs use) the thread takes no
read at the edges at all: an edge read keeps it reading just before or after every window, where no
periodic read can then fall.

Faults (docs/reliability.md): a read that raises or returns garbage is an invalid sample; a read
that *blocks* (a hung I2C transaction) must not hang the run, so while the background thread runs,
window edges ask that thread for a sample and wait at most ``read_timeout_s``; a window left
without good samples is invalid ("energy unknown"). Each run of invalid windows is warned about once.

A streaming meter (``meter.stream_energy()`` not None: the Joulescope) timestamps its own samples, so
window edges are stamped on its clock and window energy is its own integral of the stream; the
readings taken here are kept but not integrated. Re-stamping its ``read()`` (the mean of the last
chunk, delivered milliseconds late) with the host read time under-reports short windows several-fold.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
import random
import statistics
import threading
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

from edgeexit.energy.integrate import LINEAR_METHOD, piecewise_linear_energy_mj
from edgeexit.energy.meter import Clock, PowerMeter
from edgeexit.energy.reading import EnergyWindow, PowerReading
from edgeexit.energy.windows import WindowedEnergySource
from edgeexit.errors import MeterError, warn_stderr

POLLED_METHOD = ("mean of the meter's reads inside inference windows (idle windows) so far, times each window's "
                 "duration")
STREAM_METHOD = "the meter's sample stream integrated over each window"
SLOW_READ_GAP_CAP_S = 0.25  # a slow meter's reads are trusted this far from a window edge, never further


def next_sample(next_s: float, now_s: float, period_s: float, read_s: float) -> Tuple[float, float]:
    """(when the next periodic read is due, how long to wait for it). A meter that fell behind (its read
    took longer than the period) does not burst to catch up, and rests as long as its read took: forking
    vcgencmd back to back would keep a core busy beside the inference being measured, and an idle
    sampler starts a window edge's read when the edge asks."""
    due = next_s + period_s
    if due >= now_s:
        return due, due - now_s
    rest_s = min(read_s, SLOW_READ_GAP_CAP_S)
    return now_s + rest_s, rest_s


class Sampler(WindowedEnergySource):
    """Reads ``meter`` at ``rate_hz`` in a daemon thread and keeps ``history_s`` of readings.

    ``clock`` stamps every reading (the midpoint of the read) and the window edges (a streaming
    meter's own clock stamps the edges, see the module docstring), so a fake
    clock makes tests deterministic: call :meth:`sample_once` instead of starting the thread.
    """

    def __init__(
        self,
        meter: PowerMeter,
        rate_hz: float = 50.0,
        clock: Clock = time.monotonic,
        history_s: float = 600.0,
        max_gap_s: Optional[float] = None,
        sync_edges: bool = True,
        read_timeout_s: Optional[float] = None,
        warn: Optional[Callable[[str], None]] = None,
        edge_reads: bool = True,
    ) -> None:
        if not rate_hz > 0:
            raise MeterError(f"Sampler rate_hz must be > 0, got {rate_hz!r}.")
        self.meter = meter
        self.requested_rate_hz = float(rate_hz)
        # Faster than the sensor updates, a read returns the value before again: a repeat counted as a
        # read of its own is stamped later than the load it measured, and costs the bus for nothing.
        update_s = meter.update_interval_s
        self.rate_hz = min(float(rate_hz), 1.0 / update_s) if update_s else float(rate_hz)
        self.clock = clock
        self.history_s = float(history_s)
        self.max_gap_s = float(max_gap_s) if max_gap_s is not None else 2.0 / self.rate_hz
        self.sync_edges = sync_edges
        # False (while the thread samples): no read at a window's edges. An edge read keeps the thread reading
        # just before or after every window (back to back, each closing read opens the next one), so no periodic
        # read could fall in a window's first half-read: loads shorter than that went unseen, longer ones were
        # sampled short of their start. Nor is the read under way waited for: that locks the reads' phase.
        self.edge_reads = edge_reads
        # a sensor read slower than this at a window edge counts as stalled (default: 5 periods, >= 0.25 s)
        # (from the rate asked for: how long a read takes has nothing to do with how often the sensor updates)
        self.read_timeout_s = float(read_timeout_s) if read_timeout_s is not None else max(0.25, 5.0 / self.requested_rate_hz)
        self.warn = warn or warn_stderr
        self.last_error: Optional[BaseException] = None
        self.last_failed_rails: List[str] = []  # the rails that made the latest unusable reading unusable
        self.stalls = 0
        self.invalid_windows = 0
        self._in_invalid_run = False
        self._started = 0  # reads begun: an edge waits for one begun after it, never one already under way
        self._count = 0  # reads finished
        self._sampled = threading.Condition()
        self._wake = threading.Event()
        self._readings: List[PowerReading] = []
        self._times: List[float] = []
        self._spans: List[Tuple[float, float]] = []  # when each reading's read began and ended
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._read_s: Deque[float] = collections.deque(maxlen=32)  # durations of recent good reads
        self._warned_slow = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._init_windows()
        # A meter that integrates its own sample stream gets the windows (see the module docstring).
        stream = getattr(meter, "stream_energy", None)
        self._stream: Optional[WindowedEnergySource] = stream() if callable(stream) else None
        self.energy_method = STREAM_METHOD if self._stream is not None else POLLED_METHOD
        self.polled = self._stream is None

    # --- sampling ---------------------------------------------------------------------------
    def sample_once(self) -> PowerReading:
        """Read the meter once, stamp it with ``clock`` and store it."""
        with self._read_lock:
            with self._sampled:
                self._started += 1
            t_before = self.clock()
            try:
                reading = self.meter.read()
            except Exception as exc:  # noqa: BLE001 - a sampler thread must outlive a bad read
                self.last_error = exc
                reading = PowerReading(0.0, {}, None, getattr(self.meter, "source", ""))
            t_after = self.clock()
            t_s = 0.5 * (t_before + t_after)
        reading = dataclasses.replace(reading, t_s=t_s)
        if reading.valid:
            self._note_read_time(t_after - t_before)
        elif reading.failed_rails:
            self.last_failed_rails = list(reading.failed_rails)
        with self._sampled:
            self._count += 1
            self._sampled.notify_all()
        with self._lock:
            # Readings normally arrive in time order; insort keeps them sorted if threads interleave.
            i = bisect.bisect_right(self._times, t_s)
            self._times.insert(i, t_s)
            self._readings.insert(i, reading)
            self._spans.insert(i, (t_before, t_after))
            cutoff = t_s - self.history_s
            drop = bisect.bisect_left(self._times, cutoff)
            if drop:
                del self._times[:drop]
                del self._readings[:drop]
                del self._spans[:drop]
        return reading

    def _note_read_time(self, read_s: float) -> None:
        with self._lock:
            self._read_s.append(read_s)
            typical = statistics.median(self._read_s)
        if typical > 1.0 / self.rate_hz and len(self._read_s) >= 3 and not self._warned_slow:
            self._warned_slow = True
            self.warn("power meter {} takes {:.1f} ms per read, longer than the sampling period of --meter-rate-hz "
                      "{:g}: it samples at about {:.0f} Hz, so a window shorter than one read is interpolated between "
                      "reads".format(self.meter.name, typical * 1e3, self.rate_hz, 1.0 / typical))

    def gap_s(self) -> float:
        """How far from a window's edges its nearest good sample may lie: ``max_gap_s``, or two typical reads
        of a meter slower than that (vcgencmd forks a process per read), at most 0.25 s."""
        return max(self.max_gap_s, min(2.0 * (self.read_duration_s() or 0.0), SLOW_READ_GAP_CAP_S))

    def start(self) -> "Sampler":
        """Start the background thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="edgeexit-power-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the background thread and wait for it (not longer than a stalled read's timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.read_timeout_s))
            self._thread = None  # a thread stuck in a read is a daemon: it cannot keep the process alive

    def close(self) -> None:
        """Stop sampling and close the meter."""
        self.stop()
        self.meter.close()

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        period_s = 1.0 / self.rate_hz
        jitter = random.Random()
        due_s = time.monotonic()
        while not self._stop.is_set():
            delay_s = due_s - time.monotonic()
            if delay_s > 0 and self._wake.wait(delay_s):  # a window edge asked for a sample now
                self._wake.clear()
                if not self._stop.is_set():
                    self.sample_once()  # off the schedule: the periodic read stays due when it was
                    now = time.monotonic()
                    if due_s < now:
                        # fell due during the edge's read: drawn afresh, not fired at once, which would put it
                        # at the same place in every window (just after a window's opening read)
                        due_s = now + period_s * jitter.uniform(0.0, 1.0)
                continue
            t0 = time.monotonic()
            self.sample_once()
            now = time.monotonic()
            due_s, _ = next_sample(due_s, now, period_s * jitter.uniform(0.5, 1.5), now - t0)

    # --- access -----------------------------------------------------------------------------
    def readings(self, t0_s: float = float("-inf"), t1_s: float = float("inf")) -> List[PowerReading]:
        """Stored readings with ``t0_s <= t_s <= t1_s`` (valid and invalid)."""
        with self._lock:
            i0 = bisect.bisect_left(self._times, t0_s)
            i1 = bisect.bisect_right(self._times, t1_s)
            return list(self._readings[i0:i1])

    def _valid_beyond(self, t_s: float, before: bool) -> List[PowerReading]:
        """The closest valid reading strictly before (or after) ``t_s``, as a list of at most one."""
        with self._lock:  # walked by index: no copy of the history per window (usually the first one is valid)
            readings = self._readings
            if before:
                j, step = bisect.bisect_left(self._times, t_s) - 1, -1
            else:
                j, step = bisect.bisect_right(self._times, t_s), 1
            while 0 <= j < len(readings):
                if readings[j].valid:
                    return [readings[j]]
                j += step
            return []

    def latest_s(self) -> Optional[float]:
        """When the newest stored reading was taken (None before the first)."""
        with self._lock:
            return self._times[-1] if self._times else None

    def valid_mw(self, after_s: float, upto_s: float) -> List[Tuple[float, float]]:
        """(time, board power mW) of each good reading stamped in ``(after_s, upto_s]``."""
        with self._lock:
            i0 = bisect.bisect_right(self._times, after_s)
            i1 = bisect.bisect_right(self._times, upto_s)
            return [(t, float(r.total_mw)) for t, r in zip(self._times[i0:i1], self._readings[i0:i1])  # type: ignore[arg-type]
                    if r.valid]

    def inside_mw(self, t0_s: float, t1_s: float) -> Optional[List[float]]:
        """The board power (mW) of every good reading whose read began and ended within ``[t0_s, t1_s]``: what a
        load filling that window drew, for windows many reads long (a read begun before the load and slowed by
        it is stamped inside but may have read the sensor before; short windows are judged by midpoints,
        :meth:`valid_mw`). None for a streaming meter, whose windows integrate its own stream."""
        if self._stream is not None:
            return None
        with self._lock:
            i0 = bisect.bisect_left(self._times, t0_s)
            i1 = bisect.bisect_right(self._times, t1_s)
            picked = list(zip(self._readings[i0:i1], self._spans[i0:i1]))
        return [float(r.total_mw) for r, (a, b) in picked if r.valid and t0_s <= a and b <= t1_s]  # type: ignore[arg-type]

    def read_duration_s(self) -> Optional[float]:
        """How long a good read takes here (the median of the recent ones); None before the first."""
        with self._lock:
            return statistics.median(self._read_s) if self._read_s else None

    def sample_interval_s(self) -> float:
        """How far apart this meter's readings really are: the period, or where a typical read is slower than
        that, the read and the rest after it (:func:`next_sample`)."""
        period_s, read_s = 1.0 / self.rate_hz, self.read_duration_s() or 0.0
        return period_s if read_s <= period_s else read_s + min(read_s, SLOW_READ_GAP_CAP_S)

    def now_s(self) -> float:
        # a streaming meter maps its samples onto its own clock, so its windows must use that clock
        return self._stream.now_s() if self._stream is not None else self.clock()

    def _edge_sample(self, after: bool) -> None:
        if not self.sync_edges or self._stream is not None:  # a stream needs no bracketing read
            return
        thread = self._thread
        if thread is None or not thread.is_alive():
            self.sample_once()  # no background thread (tests with a fake clock): read here
            return
        if not self.edge_reads:
            return
        # Let the sampler thread read, so a read that blocks stalls that thread, never the run.
        with self._sampled:
            # Reads are serial (one thread): the first begun after now is number _started + 1. At a window's
            # end one already under way (an INA3221 read is ~3 ms of I2C, most of a 200 Hz period) began
            # before the edge, so it waits for the next; at its start the next read to end will do.
            seq = self._started if after else self._count
            self._wake.set()
            got = self._sampled.wait_for(lambda: self._count > seq, timeout=self.read_timeout_s)
        if not got:
            self.stalls += 1
            self.last_error = TimeoutError("power sensor read took longer than {:.2f} s".format(self.read_timeout_s))

    def note_window(self, valid: bool) -> None:
        """Warn once at the start of each run of invalid windows (then stay quiet until one is valid)."""
        if valid:
            self._in_invalid_run = False
            return
        self.invalid_windows += 1
        if not self._in_invalid_run:
            self._in_invalid_run = True
            why = " (last error: {})".format(self.last_error) if self.last_error is not None else ""
            if self.last_failed_rails:
                why += " (last unusable reading: rail(s) {} could not be read)".format(
                    ", ".join(self.last_failed_rails))
            self.warn("power meter {} gave no usable samples for a window or part of it{}; its energy is "
                      "reported as unknown".format(self.meter.name, why))

    # --- integration ------------------------------------------------------------------------
    def energy_mj(self, t0_s: float, t1_s: float) -> EnergyWindow:
        """Energy over ``[t0_s, t1_s]`` (host seconds on :meth:`now_s`'s clock); see the module docstring."""
        if t1_s < t0_s:
            raise MeterError(f"Window end {t1_s} s is before its start {t0_s} s.")
        if self._stream is not None:
            window = self._stream.energy_mj(t0_s, t1_s)
            self.note_window(window.valid)
            return window
        gap_s = self.gap_s()
        near = [r for r in self.readings(t0_s - gap_s, t1_s + gap_s) if r.valid]
        basis = near[0].total_basis if near else getattr(self.meter, "total_basis", "")
        invalid = EnergyWindow(
            0.0, 0.0, 0, LINEAR_METHOD, False, t0_s, t1_s, basis, self.meter.name, {}
        )
        # Held-constant extrapolation is trusted only up to gap_s past the last good sample, and
        # interpolation only where no instant of the window lies further than gap_s from a good one.
        if (not near or near[0].t_s > t0_s + gap_s or near[-1].t_s < t1_s - gap_s
                or _outage_inside(near, t0_s, t1_s, gap_s)):
            self.note_window(False)
            return invalid
        self.note_window(True)
        # The knots used are the near samples plus the closest valid one beyond each side, so a gap
        # (dropped reads) is bridged by interpolation, never by zeros, nor held flat to an edge.
        near = self._valid_beyond(t0_s - gap_s, before=True) + near + self._valid_beyond(t1_s + gap_s, before=False)
        ts = [r.t_s for r in near]
        ps = [r.total_mw for r in near]  # type: ignore[misc]
        duration_s = t1_s - t0_s
        n_inside = sum(1 for t in ts if t0_s <= t <= t1_s)
        if duration_s == 0:
            return dataclasses.replace(invalid, valid=True, n_samples=n_inside)
        energy = piecewise_linear_energy_mj(ts, ps, t0_s, t1_s)
        rails: Dict[str, float] = {}
        for rail in near[0].rails_mw:
            pts = [(r.t_s, r.rails_mw[rail]) for r in near if rail in r.rails_mw]
            rails[rail] = piecewise_linear_energy_mj(
                [p[0] for p in pts], [p[1] for p in pts], t0_s, t1_s
            )
        return EnergyWindow(
            energy_mj=energy,
            mean_power_mw=energy / duration_s,
            n_samples=n_inside,
            method=LINEAR_METHOD,
            valid=True,
            t0_s=t0_s,
            t1_s=t1_s,
            total_basis=basis,
            source=self.meter.name,
            rails_energy_mj=rails,
        )


def _outage_inside(near: List[PowerReading], t0_s: float, t1_s: float, gap_s: float) -> bool:
    """True if two consecutive good samples lie more than ``2 * gap_s`` apart around an instant of the
    window, i.e. that instant is further than ``gap_s`` from both (the edges' rule, applied inside).
    One dropped read (two periods) stays bridged; a sensor gone for a while does not."""
    for a, b in zip(near, near[1:]):
        if b.t_s - a.t_s > 2.0 * gap_s and t0_s < 0.5 * (a.t_s + b.t_s) < t1_s:
            return True
    return False

