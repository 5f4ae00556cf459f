"""Energy integration over windows, with a fake clock and an INA3221 tree the test drives.

The meter is the real :class:`Ina3221Meter` reading files the test rewrites between samples, the
way the simulated board (or the kernel) updates them.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Tuple

import pytest
from energy_fixtures import NANO_POWER, AGX_ORIN_POWER, FakeClock, make_agx_orin, make_nano, set_iio_power, write

from edgeexit.energy import Ina3221Meter, Sampler, energy_per_period_mj
from edgeexit.energy.integrate import piecewise_linear_energy_mj
from edgeexit.energy.sampler import SLOW_READ_GAP_CAP_S, next_sample
from edgeexit.errors import MeterError


def nano_sampler(tmp_path: Path, clock: FakeClock, rate_hz: float = 10.0) -> Tuple[Sampler, Path]:
    node = make_nano(tmp_path)
    return Sampler(Ina3221Meter(tmp_path, NANO_POWER, clock=clock), rate_hz=rate_hz, clock=clock), node


def drive(sampler: Sampler, node: Path, clock: FakeClock, power_mw: Callable[[float], float],
          t0_s: float, t1_s: float, period_s: float) -> None:
    """Sample at t0, t0+period, ... <= t1 with the board drawing power_mw(t)."""
    n = int(round((t1_s - t0_s) / period_s))
    for k in range(n + 1):
        clock.t_s = t0_s + k * period_s
        set_iio_power(node, 0, int(round(power_mw(clock.t_s))))
        sampler.sample_once()


def test_constant_power(tmp_path: Path, clock: FakeClock) -> None:
    sampler, node = nano_sampler(tmp_path, clock)
    drive(sampler, node, clock, lambda t: 5000.0, 100.0, 101.0, 0.1)
    w = sampler.energy_mj(100.05, 100.95)
    assert w.valid
    assert w.energy_mj == pytest.approx(5000.0 * 0.9)
    assert w.mean_power_mw == pytest.approx(5000.0)
    assert w.n_samples == 9
    assert "trapezoid" in w.method and "interpolat" in w.method
    assert w.source == "ina3221-iio" and "POM_5V_IN" in w.total_basis
    assert w.rails_energy_mj["POM_5V_GPU"] == pytest.approx(597.0 * 0.9)


def test_ramp_is_integrated_exactly(tmp_path: Path, clock: FakeClock) -> None:
    sampler, node = nano_sampler(tmp_path, clock)
    drive(sampler, node, clock, lambda t: 1000.0 + 1000.0 * (t - 100.0), 100.0, 101.0, 0.1)
    w = sampler.energy_mj(100.25, 100.75)
    # integral of 1000 + 1000 t over [0.25, 0.75] = 500 + 1000 * (0.75^2 - 0.25^2) / 2
    assert w.energy_mj == pytest.approx(750.0)
    assert w.mean_power_mw == pytest.approx(1500.0)


def test_window_shorter_than_sampling_period_gets_interpolated_power(tmp_path: Path, clock) -> None:
    sampler, node = nano_sampler(tmp_path, clock)
    drive(sampler, node, clock, lambda t: 1000.0 if t < 100.05 else 2000.0, 100.0, 100.1, 0.1)
    w = sampler.energy_mj(100.03, 100.04)  # 10 ms window between samples 100 ms apart
    assert w.valid and w.n_samples == 0
    assert w.mean_power_mw == pytest.approx(1350.0)  # linear between 1000 @ 0 and 2000 @ 0.1
    assert w.energy_mj == pytest.approx(13.5)


def test_keyed_windows_sample_at_the_edges(tmp_path: Path, clock) -> None:
    sampler, node = nano_sampler(tmp_path, clock, rate_hz=1.0)  # far slower than the inference
    clock.t_s = 100.0
    set_iio_power(node, 0, 3000)
    sampler.begin_window("inference-1")
    clock.t_s = 100.004  # a 4 ms inference, at constant 3 W
    w = sampler.end_window("inference-1")
    assert w.valid and w.t0_s == 100.0 and w.t1_s == 100.004
    assert w.energy_mj == pytest.approx(12.0)
    assert len(sampler.readings()) == 2


def test_duplicate_and_unknown_keys_name_the_key(tmp_path: Path, clock) -> None:
    sampler, _ = nano_sampler(tmp_path, clock)
    sampler.begin_window("block-2")
    with pytest.raises(MeterError, match="'block-2' already exists"):
        sampler.begin_window("block-2")
    with pytest.raises(MeterError, match="'exit-9' was never begun"):
        sampler.end_window("exit-9")
    sampler.cancel_window("block-2")
    with pytest.raises(MeterError, match="'block-2'"):
        sampler.end_window("block-2")


def test_failed_read_in_the_middle_is_bridged_not_zeroed(tmp_path: Path, clock) -> None:
    sampler, node = nano_sampler(tmp_path, clock)
    for k, text in enumerate(["2000\n", "2000\n", "nan\n", "", "2000\n", "2000\n"]):
        clock.t_s = 100.0 + 0.1 * k
        write(node / "in_power0_input", text)
        sampler.sample_once()
    w = sampler.energy_mj(100.0, 100.5)
    assert w.valid and w.energy_mj == pytest.approx(1000.0)
    assert w.n_samples == 4  # only the good samples count


def test_window_with_no_good_samples_is_invalid(tmp_path: Path, clock) -> None:
    sampler, node = nano_sampler(tmp_path, clock)
    write(node / "in_power0_input", "nan\n")
    for k in range(5):
        clock.t_s = 100.0 + 0.1 * k
        sampler.sample_once()
    w = sampler.energy_mj(100.0, 100.4)
    assert not w.valid and w.energy_mj == 0.0 and w.n_samples == 0


def test_window_far_past_the_last_sample_is_invalid(tmp_path: Path, clock) -> None:
    sampler, node = nano_sampler(tmp_path, clock)
    drive(sampler, node, clock, lambda t: 4000.0, 100.0, 100.5, 0.1)
    assert sampler.energy_mj(100.3, 100.65).valid  # within max_gap (2 periods) of the last sample
    assert not sampler.energy_mj(100.3, 101.5).valid
    assert not sampler.energy_mj(90.0, 91.0).valid


def test_sum_board_window(tmp_path: Path, clock) -> None:
    make_agx_orin(tmp_path)
    sampler = Sampler(Ina3221Meter(tmp_path, AGX_ORIN_POWER, clock=clock), rate_hz=10, clock=clock)
    for k in range(3):
        clock.t_s = 100.0 + 0.1 * k
        sampler.sample_once()
    w = sampler.energy_mj(100.0, 100.2)
    assert w.energy_mj == pytest.approx((4968.0 + 2488.0 + 3968.0) * 0.2)  # VDDQ_VDD2_1V8AO is in VIN_SYS_5V0
    assert w.total_basis.startswith("sum of rails")


def test_idle_power_and_energy_per_period(tmp_path: Path, clock) -> None:
    sampler, node = nano_sampler(tmp_path, clock, rate_hz=100.0)
    # 0.0-0.2 s inference at 3 W, then idle at 1 W until the next inference at 1.0 s
    drive(sampler, node, clock, lambda t: 3000.0 if t <= 100.2 + 1e-9 else 1000.0, 100.0, 100.2, 0.01)
    drive(sampler, node, clock, lambda t: 1000.0, 100.21, 101.0, 0.01)
    assert sampler.idle_power_mw(100.3, 101.0) == pytest.approx(1000.0)
    period = sampler.period_energy(100.0, 100.2, 101.0)
    assert period.valid
    assert period.inference_energy_mj == pytest.approx(600.0)
    # idle part: 10 ms linear ramp 3000 -> 1000 mW, then 0.79 s at 1000 mW
    assert period.idle_energy_mj == pytest.approx(0.01 * 2000.0 + 0.79 * 1000.0)
    assert period.period_s == pytest.approx(1.0) and period.inference_s == pytest.approx(0.2)
    assert period.energy_mj == pytest.approx(period.inference_energy_mj + period.idle_energy_mj)


def test_idle_power_without_samples_raises(tmp_path: Path, clock) -> None:
    sampler, _ = nano_sampler(tmp_path, clock)
    with pytest.raises(MeterError, match="idle power is unknown"):
        sampler.idle_power_mw(0.0, 1.0)


def test_energy_per_period_fixed_period() -> None:
    assert energy_per_period_mj(50.0, 0.02, 1500.0, 0.1) == pytest.approx(50.0 + 1500.0 * 0.08)
    assert energy_per_period_mj(50.0, 0.2, 1500.0, 0.1) == pytest.approx(50.0)  # no idle left


def test_piecewise_linear_holds_constant_beyond_samples() -> None:
    assert piecewise_linear_energy_mj([1.0, 2.0], [100.0, 300.0], 0.0, 3.0) == pytest.approx(
        100.0 + 200.0 + 300.0
    )
    assert piecewise_linear_energy_mj([1.0], [100.0], 5.0, 5.0) == 0.0


def test_bad_rate_and_reversed_window(tmp_path: Path, clock) -> None:
    make_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, NANO_POWER, clock=clock)
    with pytest.raises(MeterError, match="rate_hz"):
        Sampler(meter, rate_hz=0)
    with pytest.raises(MeterError, match="before its start"):
        Sampler(meter, clock=clock).energy_mj(2.0, 1.0)


def test_history_is_bounded(tmp_path: Path, clock) -> None:
    make_nano(tmp_path)
    sampler = Sampler(Ina3221Meter(tmp_path, NANO_POWER, clock=clock), clock=clock, history_s=1.0)
    for k in range(50):
        clock.t_s = 100.0 + 0.1 * k
        sampler.sample_once()
    assert len(sampler.readings()) == 11  # 103.9 .. 104.9


def test_background_thread_samples_real_clock(tmp_path: Path) -> None:
    make_nano(tmp_path)
    sampler = Sampler(Ina3221Meter(tmp_path, NANO_POWER), rate_hz=200.0)
    with sampler:
        deadline = time.monotonic() + 30.0
        while len(sampler.readings()) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    got = sampler.readings()
    assert len(got) >= 5
    assert all(r.total_mw == 4012.0 for r in got)
    assert all(b.t_s > a.t_s for a, b in zip(got, got[1:]))
    w = sampler.energy_mj(got[0].t_s, got[-1].t_s)
    assert w.valid and w.mean_power_mw == pytest.approx(4012.0)


def test_pacing_on_time_reads_keep_the_period():
    assert next_sample(1.000, 1.002, 0.005, 0.001) == (pytest.approx(1.005), pytest.approx(0.003))


def test_pacing_a_slow_meter_rests_as_long_as_its_read_took_instead_of_reading_back_to_back():
    due, wait = next_sample(1.000, 1.030, 0.005, 0.030)  # a 30 ms read at 200 Hz
    assert wait == pytest.approx(0.030) and due == pytest.approx(1.060)
    due, wait = next_sample(1.000, 31.0, 0.005, 30.0)  # a hung read that came back: no 30 s nap
    assert wait == pytest.approx(SLOW_READ_GAP_CAP_S)


class SlowI2cMeter(Ina3221Meter):
    """An INA3221 whose reading takes as long as six I2C file reads do on a Jetson (~554 us each)."""

    def read(self):  # type: ignore[no-untyped-def]
        time.sleep(0.0033)
        return super().read()


def test_a_window_edge_waits_for_a_read_begun_after_it(tmp_path: Path) -> None:
    """At 200 Hz a 3.3 ms read is under way most of the time; end_window took the read already under way at
    the edge as "the sample after the end", so the window's end was held flat from a reading taken before
    it (39 of 100 windows). Every window must have a reading begun after its end."""
    make_nano(tmp_path)
    sampler = Sampler(SlowI2cMeter(tmp_path, NANO_POWER), rate_hz=200.0, read_timeout_s=5.0)  # a loaded CI host
    late = []
    with sampler:
        for i in range(40):
            sampler.begin_window(i)
            time.sleep(0.003)
            w = sampler.end_window(i)
            after = sampler.readings(w.t1_s)  # stamped mid-read: a read begun after t1 is stamped after it
            if not after:
                late.append(i)
    assert late == [] and sampler.stalls == 0


def test_edge_reads_do_not_push_the_periodic_reads_out_of_back_to_back_windows(tmp_path: Path) -> None:
    """Each edge read used to take the place of the next periodic one: windows back to back (a run without a
    period, 2.5 ms inferences at 200 Hz) left only edge reads, all outside the windows, so no read ever saw a
    load. The periodic reads now keep their own (jittered) schedule and land inside the windows."""
    make_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, NANO_POWER)
    windows = []
    with Sampler(meter, rate_hz=200.0) as sampler:
        end = time.monotonic() + 0.5
        n = 0
        while time.monotonic() < end:
            key = "w{}".format(n)
            t0 = sampler.begin_window(key)
            time.sleep(0.0025)
            windows.append((t0, sampler.end_window(key).t1_s))
            n += 1
        inside = sum(len(sampler.valid_mw(a, b)) for a, b in windows)  # reads stamped inside
    assert inside >= 10, (inside, len(windows))  # about 100 periodic reads in 0.5 s; 0 before


def test_a_slow_meters_sample_interval_is_its_read_and_the_rest_after_it(tmp_path: Path, clock: FakeClock) -> None:
    """A read slower than the period is followed by a rest as long as it (next_sample), so reads land two reads
    apart: the profile sized its windows by one read and got ~4 reads where it asked for 10 (Pi 5 PMIC)."""
    read_s = [0.040]

    class Slow(Ina3221Meter):
        def read(self):  # type: ignore[no-untyped-def]
            clock.t_s += read_s[0]
            return super().read()

    make_nano(tmp_path)
    sampler = Sampler(Slow(tmp_path, NANO_POWER, clock=clock), rate_hz=200.0, clock=clock)
    assert sampler.sample_interval_s() == pytest.approx(0.005)  # no read yet: the period
    for _ in range(3):
        sampler.sample_once()
    due, wait = next_sample(0.0, read_s[0], 0.005, read_s[0])  # a read begun at 0 ends at read_s
    assert sampler.sample_interval_s() == pytest.approx(due) == pytest.approx(0.080)
    read_s[0] = 1.0  # hung reads: the rest is capped
    for _ in range(32):
        sampler.sample_once()
    assert sampler.sample_interval_s() == pytest.approx(1.0 + SLOW_READ_GAP_CAP_S)


def test_failed_reads_before_a_window_are_bridged_not_held_flat(tmp_path: Path, clock: FakeClock) -> None:
    """Reads of 1000, failed, failed, 4000 mW at 100.0-100.3 s: the window [100.25, 100.30] lies on the line
    from 1000 to 4000 (3500 to 4000 mW). The last good read before it was further than the gap away, so it was
    no knot, and the window was held flat at 4000 mW."""
    sampler, node = nano_sampler(tmp_path, clock)
    for k, mw in enumerate([1000, None, None, 4000, 4000]):
        clock.t_s = 100.0 + 0.1 * k
        if mw is None:  # the driver unbound for a moment: its directory gone
            shutil.move(str(node), str(tmp_path / "unbound"))
            assert not sampler.sample_once().valid
            shutil.move(str(tmp_path / "unbound"), str(node))
        else:
            set_iio_power(node, 0, mw)
            assert sampler.sample_once().valid
    assert 100.25 - sampler.gap_s() > 100.0  # the good read before lies beyond the gap
    w = sampler.energy_mj(100.25, 100.30)
    assert w.valid and w.energy_mj == pytest.approx(0.5 * (3500.0 + 4000.0) * 0.05)
