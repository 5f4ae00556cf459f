"""Window energy of a streaming Joulescope, bare or wrapped in the Sampler as run/profile/bench wrap it.

Audit defect: the Sampler re-stamped ``JoulescopeMeter.read()`` (the mean of the last delivered chunk)
with the host read time, so with a 100 kHz stream sent in 10 ms chunks that reach the host 5 ms late,
a 2 ms 5 W pulse read about 2 mJ instead of 10. The fake instrument below streams exactly like that.
While a window's end waits for its data, host time keeps passing on another thread (the driver's USB
thread delivering the late chunks), as it does on a real host.
"""
from __future__ import annotations

import threading
from typing import List, Optional

import pytest
from energy_fixtures import FakeClock, FakeJoulescopeDriver

from edgeexit.energy import Sampler
from edgeexit.energy.factory import NoMeter
from edgeexit.energy.joulescope import JoulescopeMeter
from edgeexit.energy.reading import EnergyWindow
from edgeexit.probes import MeterProbe

WALL_MINUS_MONO_S = 1_700_000_000.0
BASE_W, PULSE_W = 1.0, 5.0
PULSE_START_MS = 50  # host ms after 100.0 s


class WatchedClock(FakeClock):
    """A fake host clock that signals the first read after :meth:`arm` (the window end's stamp)."""

    def __init__(self, t_s: float) -> None:
        super().__init__(t_s)
        self.read = threading.Event()
        self._armed = False

    def arm(self) -> None:
        self.read.clear()
        self._armed = True

    def __call__(self) -> float:
        t_s = self.t_s
        if self._armed:
            self._armed = False
            self.read.set()
        return t_s


def late_stream(pulse_ms: int, data_wait_s: float = 5.0):
    """A JS220 at 100 kHz, 10 ms chunks delivered 5 ms late, measuring a 5 W pulse on 1 W."""
    t_end_s = 100.0 + (PULSE_START_MS + pulse_ms) / 1e3

    def power_w(t_s: float) -> float:
        return PULSE_W if 100.0 + PULSE_START_MS / 1e3 <= t_s < t_end_s else BASE_W

    clock = WatchedClock(100.0)
    drv = FakeJoulescopeDriver(power_w, WALL_MINUS_MONO_S, counter0_host_s=100.0, chunk_samples=1000,
                               usb_latency_s=0.005)
    meter = JoulescopeMeter(driver=drv, sample_rate_hz=100_000, clock=clock,
                            wall_clock=lambda: clock.t_s + WALL_MINUS_MONO_S, data_wait_s=data_wait_s)
    return meter, drv, clock


class Host:
    """Host time passing beside the instrument: 1 ms steps, USB deliveries, 200 Hz sampler reads."""

    def __init__(self, clock: WatchedClock, drv: FakeJoulescopeDriver, sampler: Optional[Sampler]) -> None:
        self.clock, self.drv, self.sampler = clock, drv, sampler
        self.ms = 0

    def pass_to(self, to_ms: int) -> None:
        for ms in range(self.ms + 1, to_ms + 1):
            self.clock.t_s = 100.0 + ms / 1e3
            self.drv.deliver(self.clock.t_s)
            if self.sampler is not None and ms % 5 == 0:
                self.sampler.sample_once()
            self.ms = ms

    def keep_passing(self, to_ms: int) -> threading.Thread:
        """From the next clock read (a window end's stamp) on, time passes on the driver's USB thread, so
        a meter waiting there for its late data gets it (and stops waiting as soon as it has it)."""
        self.clock.arm()
        usb = threading.Thread(target=lambda: self.clock.read.wait(5.0) and self.pass_to(to_ms))
        usb.start()
        return usb


def measure_pulse(pulse_ms: int, wrapped: bool) -> EnergyWindow:
    meter, drv, clock = late_stream(pulse_ms)
    sampler = Sampler(meter, rate_hz=200.0, clock=clock) if wrapped else None  # make_probe's default rate
    source = sampler if sampler is not None else meter
    host = Host(clock, drv, sampler)
    host.pass_to(PULSE_START_MS)
    source.begin_window("inference")
    host.pass_to(PULSE_START_MS + pulse_ms)
    usb = host.keep_passing(PULSE_START_MS + pulse_ms + 40)
    try:
        return source.end_window("inference")  # its data is still on the way: the meter waits for it
    finally:
        usb.join()
        meter.close()


@pytest.mark.parametrize("wrapped", [True, False], ids=["in-sampler", "bare"])
@pytest.mark.parametrize("pulse_ms", [2, 20])
def test_short_pulse_energy_comes_from_the_stream(pulse_ms: int, wrapped: bool) -> None:
    w = measure_pulse(pulse_ms, wrapped)
    assert w.valid
    assert "block sum" in w.method  # the device's samples and time map, not host-stamped reads
    assert w.energy_mj == pytest.approx(PULSE_W * pulse_ms, rel=0.01)  # W * ms = mJ: 10 and 100 mJ


def test_period_energy_has_no_gap_while_the_inference_window_waits_for_its_data() -> None:
    meter, drv, clock = late_stream(2)
    sampler = Sampler(meter, rate_hz=200.0, clock=clock)
    host = Host(clock, drv, sampler)
    usbs: List[threading.Thread] = []

    def sleep(s: float) -> None:  # the probe idles to the period's end; then closing the period waits for its data
        usbs[-1].join()  # the inference window's data has arrived: that thread is done with the clock
        host.pass_to(host.ms + int(round(s * 1e3)))
        usbs.append(host.keep_passing(host.ms + 20))

    probe = MeterProbe(sampler, meter.source, period_ms=50.0, sleep=sleep)
    host.pass_to(PULSE_START_MS)
    probe.before_inference()
    host.pass_to(PULSE_START_MS + 2)
    usbs.append(host.keep_passing(PULSE_START_MS + 15))  # the 50-60 ms chunk reaches the host at 65 ms
    probe.end(None, None)  # type: ignore[arg-type]
    assert probe.hold(probe.measure(None)) == []  # type: ignore[arg-type]  # its period is still open
    (rec,) = probe.flush()
    for usb in usbs:
        usb.join()
    meter.close()
    assert rec["energy_mj"] == pytest.approx(PULSE_W * 2, rel=0.01)
    # the 13 ms spent waiting for the inference window's data are idle time of the period, too
    assert rec["idle_energy_mj"] == pytest.approx(BASE_W * 48, rel=0.01)
    assert rec["energy_period_mj"] == pytest.approx(PULSE_W * 2 + BASE_W * 48, rel=0.01)
    assert rec["period_actual_ms"] == pytest.approx(50.0) and rec["period_overrun"] is False


def test_stream_windows_use_the_meters_clock_and_take_no_edge_reads() -> None:
    meter, drv, clock = late_stream(2)
    sampler = Sampler(meter, clock=lambda: -1.0)  # a mismatched clock must not shift the windows
    clock.t_s = 100.3
    assert sampler.now_s() == 100.3
    assert sampler.begin_window("w") == 100.3
    assert sampler.readings() == []  # the stream needs no bracketing read
    meter.close()


def test_stream_window_without_data_is_unknown_and_warned_once() -> None:
    meter, drv, clock = late_stream(2, data_wait_s=0.0)
    warnings: List[str] = []
    sampler = Sampler(meter, clock=clock, warn=warnings.append)
    assert not sampler.energy_mj(100.01, 100.02).valid
    assert not sampler.energy_mj(100.02, 100.03).valid
    assert sampler.invalid_windows == 2 and len(warnings) == 1 and "unknown" in warnings[0]
    meter.close()


def test_polled_meters_have_no_stream_of_their_own() -> None:
    assert NoMeter().stream_energy() is None  # the Sampler keeps integrating its own reads for these
