"""Joulescope windows after a wall-clock step, and a stream history sized by the caller.

The driver's time map estimates host UTC (time.time()), which NTP can step on a board without an RTC; windows
are on the monotonic clock, which never steps. A step used to move every later sample onto the wrong window."""
from __future__ import annotations

import pytest
from energy_fixtures import FakeClock, FakeJoulescopeDriver, PI4_POWER

from edgeexit.energy import meter_for_board
from edgeexit.energy.joulescope import DEFAULT_HISTORY_S, JoulescopeMeter
from edgeexit.errors import MeterError

WALL0 = 1_700_000_000.0  # time.time() - time.monotonic() when the meter opens


def pulse(t_s: float) -> float:
    """5 W for 0.5 s at host t = 102.0 s, 1 W otherwise."""
    return 5.0 if 102.0 <= t_s < 102.5 else 1.0


def make(stepped_wall: list) -> tuple:
    clock = FakeClock(100.0)
    drv = FakeJoulescopeDriver(pulse, host_offset_s=WALL0, counter0_host_s=100.0)
    meter = JoulescopeMeter(driver=drv, clock=clock, wall_clock=lambda: WALL0 + stepped_wall[0] + clock(),
                            data_wait_s=0.0)
    return meter, drv, clock


@pytest.mark.parametrize("step_s", [0.3, -0.3, 3600.0, -7.5])
def test_wall_clock_step_mid_stream_keeps_windows_on_their_samples(step_s: float) -> None:
    wall_step = [0.0]
    meter, drv, clock = make(wall_step)
    drv.stream(100.9)
    wall_step[0] = step_s  # NTP steps the wall clock ...
    drv.stream(101.4)  # ... the driver's time map keeps its old anchor points for a while (time_map_filter.c)
    drv.host_offset_s += step_s  # then jumps to the stepped clock
    drv.stream(103.0)
    clock.t_s = 103.0
    w = meter.energy_mj(102.0, 102.5)
    assert w.valid and w.energy_mj == pytest.approx(2500.0, rel=1e-3)
    assert meter.energy_mj(101.0, 102.0).energy_mj == pytest.approx(1000.0, rel=1e-3)  # across the step
    assert meter.clock_steps == 1


def test_step_across_dropped_messages_is_still_followed() -> None:
    meter, drv, clock = make([0.0])
    drv.stream(100.9)
    drv.counter += 20 * drv.chunk_samples * 20  # 20 messages of 1000 samples (decimate 20) lost on USB
    drv.host_offset_s += 0.3
    drv.stream(103.0)
    w = meter.energy_mj(102.0, 102.5)
    assert w.valid and w.energy_mj == pytest.approx(2500.0, rel=1e-3)


def test_small_time_map_refinements_are_followed_not_taken_as_steps() -> None:
    meter, drv, clock = make([0.0])
    drv.stream(101.0)
    drv.host_offset_s -= 0.0005  # the driver's estimate improves by 0.5 ms: a refinement
    drv.stream(103.0)
    assert meter.clock_steps == 0
    assert meter.energy_mj(102.0, 102.5).energy_mj == pytest.approx(2500.0, rel=2e-3)


# --- the stream history, sized by the caller (--period-ms allows up to an hour) --------------------------
def test_meter_for_board_passes_the_history_to_the_joulescope() -> None:
    clock = FakeClock(100.0)
    drv = FakeJoulescopeDriver(lambda t: 1.0, host_offset_s=WALL0, counter0_host_s=100.0, chunk_samples=10_000)
    meter = meter_for_board(PI4_POWER, kind="joulescope", joulescope_driver=drv, clock=clock, history_s=700.0)
    assert isinstance(meter, JoulescopeMeter) and meter.history_s == 700.0
    meter.data_wait_s = 0.0
    drv.host_offset_s = meter.host_offset_s  # the factory's meter reads the real wall clock
    drv.publish("u/js220/000415/h/fs", 1000)  # fewer samples keep the test fast; each message carries its rate
    drv.stream(400.0)
    w = meter.energy_mj(100.0, 400.0)  # a 300 s period: past the default 120 s
    assert w.valid and w.energy_mj == pytest.approx(300_000.0, rel=1e-3)


def test_history_default_is_unchanged_and_must_be_positive() -> None:
    drv = FakeJoulescopeDriver(lambda t: 1.0, host_offset_s=WALL0, counter0_host_s=100.0)
    assert DEFAULT_HISTORY_S == 120.0
    assert meter_for_board(PI4_POWER, kind="joulescope", joulescope_driver=drv).history_s == 120.0
    for bad in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(MeterError, match="history_s"):
            JoulescopeMeter(driver=FakeJoulescopeDriver(lambda t: 1.0, WALL0, 100.0), history_s=bad)
