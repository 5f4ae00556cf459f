"""The INA3221 hwmon driver's conversion settings: read, reported, and the sampler kept to them."""
from __future__ import annotations

from pathlib import Path

from energy_fixtures import AGX_ORIN_POWER, NANO_POWER, ORIN_NANO_POWER, make_agx_orin, make_nano, make_orin_nano, write

from edgeexit.energy import Ina3221Meter
from edgeexit.energy.sampler import Sampler


def test_hwmon_update_interval_and_samples_are_read_and_named(tmp_path: Path, clock) -> None:
    node = make_orin_nano(tmp_path)
    write(node / "update_interval", "13\n")
    write(node / "samples", "4\n")
    meter = Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock)
    assert [(c.chip, c.update_interval_ms, c.samples) for c in meter.conversions] == [("1-0040", 13.0, 4)]
    assert meter.update_interval_s == 0.013
    assert "1-0040 converts every 13 ms (averaging 4 samples)" in meter.source


def test_slowest_chip_sets_the_update_interval(tmp_path: Path, clock) -> None:
    first, second = make_agx_orin(tmp_path)
    write(second / "update_interval", "26\n")
    meter = Ina3221Meter(tmp_path, AGX_ORIN_POWER, clock=clock)
    assert [c.update_interval_ms for c in meter.conversions] == [7.0, 26.0]
    assert meter.update_interval_s == 0.026


def test_missing_or_garbage_interval_is_unknown(tmp_path: Path, clock) -> None:
    node = make_orin_nano(tmp_path)
    (node / "update_interval").unlink()
    write(node / "samples", "banana\n")
    meter = Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock)
    assert meter.update_interval_s is None
    assert "converts every ? ms (no update_interval) (averaging ? samples)" in meter.source
    write(node / "update_interval", "-5\n")
    assert Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock).update_interval_s is None
    write(node / "update_interval", "1e12\n")  # beyond the driver's slowest setting
    assert Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock).update_interval_s is None


def test_jetpack4_iio_driver_reports_no_conversion(tmp_path: Path, clock) -> None:
    make_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, NANO_POWER, clock=clock)
    assert meter.conversions == [] and meter.update_interval_s is None
    assert "converts" not in meter.source


def test_conversion_lag_only_where_the_driver_says_how_it_converts(tmp_path: Path, clock) -> None:
    """A read returns the chip's last conversion, up to an update interval old: the lag the probe fits busy power
    with (edgeexit.energy.busy_idle). Only where it is known: one sample at a time, on the hwmon driver."""
    node = make_orin_nano(tmp_path)
    assert Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock).conversion_lag_s == 0.007  # the mainline default
    write(node / "samples", "4\n")  # averaging: a filter whose lag the documents do not agree on
    assert Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock).conversion_lag_s == 0.0
    write(node / "samples", "1\n")
    (node / "update_interval").unlink()
    assert Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock).conversion_lag_s == 0.0
    nano = tmp_path / "nano"
    make_nano(nano)  # JetPack 4's IIO driver says nothing
    assert Ina3221Meter(nano, NANO_POWER, clock=clock).conversion_lag_s == 0.0


def test_sampler_reads_no_faster_than_the_chip_updates(tmp_path: Path, clock) -> None:
    node = make_orin_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock)  # the driver default, 7 ms
    sampler = Sampler(meter, rate_hz=200.0, clock=clock)
    assert sampler.requested_rate_hz == 200.0
    assert abs(sampler.rate_hz - 1 / 0.007) < 1e-9
    assert abs(sampler.sample_interval_s() - 0.007) < 1e-12
    assert Sampler(meter, rate_hz=50.0, clock=clock).rate_hz == 50.0  # slower than the chip: as asked
    # a stalled read is judged by the rate asked for, not by the chip's interval (up to ~50 s): a hung I2C read
    # must still count as stalled within a quarter second
    write(node / "update_interval", "40000\n")
    slow = Sampler(Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock), rate_hz=200.0, clock=clock)
    assert slow.rate_hz == 1 / 40.0 and slow.read_timeout_s == 0.25
    (node / "update_interval").unlink()
    assert Sampler(Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock), rate_hz=200.0, clock=clock).rate_hz == 200.0


def test_profile_window_power_leaves_out_reads_whose_value_predates_the_window(tmp_path: Path, clock) -> None:
    """A hwmon INA3221 read returns the chip's last finished conversion, from up to U + U/6 before it: the
    first reads of a segment's window show the idle board before it. The profile averaged them in (~4% low on
    busy power at 7 ms); reads begun in that first lag are now left out."""
    from edgeexit.profiling import conversion_lag_s, window_power_mw

    node = make_orin_nano(tmp_path)
    sampler = Sampler(Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock), rate_hz=200.0, clock=clock)
    lag_s = conversion_lag_s(sampler)
    assert abs(lag_s - 0.007 * 7 / 6) < 1e-12
    t0_s = clock.t_s = 100.0
    write(node / "in1_input", "5000\n")

    def read_at(t_s: float) -> None:  # VDD_IN at 5 V: the load of lag_s ago, idle 1500 mW before t0, 5000 inside
        clock.t_s = t_s
        write(node / "curr1_input", "{}\n".format(1000 if t_s - lag_s >= t0_s else 300))

    read_at(t0_s)
    sampler.begin_window("seg")  # its edge read, at t0, shows the idle board
    for k in range(1, 13):
        read_at(t0_s + 0.007 * k)
        sampler.sample_once()
    w = sampler.end_window("seg")
    assert w.valid and w.mean_power_mw < 4900  # the trapezoid over the window sees the idle start
    assert window_power_mw(sampler, w) == 5000.0
