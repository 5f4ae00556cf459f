"""A window the sensor was gone for most of is "energy unknown", not an interpolation across the outage;
a dropped read or two, short windows and slow meters still measure."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, List, Sequence

import pytest
from energy_fixtures import NANO_POWER, FakeClock, make_nano, set_iio_power

from edgeexit.energy import Ina3221Meter, Pi5PmicMeter, Sampler
from edgeexit.energy.sampler import next_sample
from edgeexit.errors import MeterError

PMIC_TOTAL_MW = 3510.32  # tests/energy/data/pmic_read_adc_pi5.txt


def nano(tmp_path: Path, clock: FakeClock, warnings: List[str], rate_hz: float = 100.0):  # type: ignore[no-untyped-def]
    node = make_nano(tmp_path)  # POM_5V_IN = 4012 mW
    return Sampler(Ina3221Meter(tmp_path, NANO_POWER, clock=clock), rate_hz=rate_hz, clock=clock,
                   warn=warnings.append), node


def unbound(tmp_path: Path, node: Path) -> Callable[[], None]:
    """The INA3221 driver unbinds (its sysfs directory vanishes); call the result to bind it again."""
    saved = tmp_path / "unbound"
    shutil.move(str(node), str(saved))
    return lambda: shutil.move(str(saved), str(node))


def test_outage_inside_a_window_makes_it_unknown_with_one_warning(tmp_path: Path) -> None:
    clock, warnings = FakeClock(100.0), []  # type: FakeClock, List[str]
    sampler, node = nano(tmp_path, clock, warnings)
    sampler.begin_window("w")
    clock.t_s += 0.01
    sampler.sample_once()
    rebind = unbound(tmp_path, node)
    for _ in range(998):  # ~10 s of failed reads while the load really changed
        clock.t_s += 0.01
        sampler.sample_once()
    rebind()
    set_iio_power(node, 0, 9000)
    clock.t_s += 0.01
    w = sampler.end_window("w")
    assert not w.valid and w.energy_mj == 0.0
    assert sampler.invalid_windows == 1
    assert len(warnings) == 1 and "no usable samples" in warnings[0]
    assert not sampler.energy_mj(100.005, 100.5).valid  # any part of the outage: unknown too, no second warning
    assert sampler.invalid_windows == 2 and len(warnings) == 1
    assert sampler.energy_mj(100.0, 100.01).valid  # before the outage, good samples cover it


def test_one_or_two_dropped_reads_with_timing_jitter_stay_bridged(tmp_path: Path) -> None:
    clock, warnings = FakeClock(100.0), []  # type: FakeClock, List[str]
    sampler, node = nano(tmp_path, clock, warnings)  # 100 Hz: gap_s = 20 ms
    times = [100.000, 100.010, 100.0205, 100.0312, 100.040, 100.0505, 100.061, 100.070]
    for k, t in enumerate(times):
        clock.t_s = t
        if k in (2, 5, 6):  # one dropped read, then two in a row, with the thread waking late
            rebind = unbound(tmp_path, node)
            sampler.sample_once()
            rebind()
        else:
            sampler.sample_once()
    w = sampler.energy_mj(100.0, 100.07)
    assert w.valid and w.mean_power_mw == pytest.approx(4012.0) and warnings == []


def test_window_shorter_than_one_period_between_late_reads_is_measured(tmp_path: Path) -> None:
    clock, warnings = FakeClock(100.0), []  # type: FakeClock, List[str]
    sampler, node = nano(tmp_path, clock, warnings)
    for t in (100.0, 100.016):  # the second read 6 ms late
        clock.t_s = t
        sampler.sample_once()
    w = sampler.energy_mj(100.007, 100.008)  # a 1 ms inference, no edge reads
    assert w.valid and w.energy_mj == pytest.approx(4.012)


class ForkingVcgencmd:
    """``vcgencmd pmic_read_adc`` that takes ``read_s`` of the clock per fork, failing while ``down``."""

    def __init__(self, clock: FakeClock, text: str, read_s: float) -> None:
        self.clock, self.text, self.read_s, self.down = clock, text, read_s, False

    def __call__(self, argv: Sequence[str]) -> str:
        self.clock.t_s += self.read_s
        if self.down:
            raise MeterError("'vcgencmd pmic_read_adc' failed: VCHI initialization failed")
        return self.text


def pace(sampler: Sampler, clock: FakeClock, until_s: float) -> None:
    """What the sampler thread does, on the fake clock: read, then wait as next_sample says."""
    period_s, next_s = 1.0 / sampler.rate_hz, clock.t_s
    while clock.t_s < until_s:
        t0 = clock.t_s
        sampler.sample_once()
        next_s, wait_s = next_sample(next_s, clock.t_s, period_s, clock.t_s - t0)
        clock.t_s += wait_s


@pytest.mark.parametrize("read_s", [0.03, 0.125, 0.2])  # gap_s 60 ms, then the 0.25 s cap
def test_slow_meter_measures_between_its_reads_and_an_outage_is_unknown(pmic_text: str, read_s: float) -> None:
    clock, warnings = FakeClock(100.0), []  # type: FakeClock, List[str]
    firmware = ForkingVcgencmd(clock, pmic_text, read_s)
    sampler = Sampler(Pi5PmicMeter(runner=firmware, clock=clock), rate_hz=50.0, clock=clock,
                      sync_edges=False, warn=warnings.append)
    pace(sampler, clock, 103.0)
    assert sampler.gap_s() == pytest.approx(min(2 * read_s, 0.25))
    w = sampler.energy_mj(101.0, 102.9)
    assert w.valid and w.mean_power_mw == pytest.approx(PMIC_TOTAL_MW)
    t = 101.5 + 0.1 * read_s  # a short inference somewhere between two reads
    assert sampler.energy_mj(t, t + 0.001).valid
    firmware.down = True
    pace(sampler, clock, 104.0)  # a second without the sensor
    firmware.down = False
    pace(sampler, clock, 105.0)
    assert not sampler.energy_mj(102.5, 104.5).valid
    assert sampler.energy_mj(104.5, 104.9).valid
    assert sampler.invalid_windows == 1
    assert len([m for m in warnings if "no usable samples" in m]) == 1
