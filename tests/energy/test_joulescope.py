"""Joulescope meter against a fake driver that speaks pyjoulescope_driver's message format."""
from __future__ import annotations

import pytest
from energy_fixtures import FakeClock, FakeJoulescopeDriver

from edgeexit.energy import Sampler
from edgeexit.energy.joulescope import JoulescopeMeter
from edgeexit.energy.time64 import SECOND, as_posix_s, as_time64, counter_to_posix_s
from edgeexit.errors import MeterError, SensorMissingError

WALL_MINUS_MONO_S = 1_700_000_000.0  # host time.time() - time.monotonic()


def pulse(t_s: float) -> float:
    """2 W during [100.5, 100.7) host seconds, 0.5 W otherwise."""
    return 2.0 if 100.5 <= t_s < 100.7 else 0.5


def make(power=pulse, fs: int = 100_000, **kw) -> tuple:
    clock = FakeClock(100.0)
    drv = FakeJoulescopeDriver(power, WALL_MINUS_MONO_S, counter0_host_s=100.0, **kw)
    meter = JoulescopeMeter(
        driver=drv,
        sample_rate_hz=fs,
        clock=clock,
        wall_clock=lambda: clock() + WALL_MINUS_MONO_S,
        data_wait_s=0.0,
    )
    return meter, drv, clock


def test_time64_matches_the_driver_definition() -> None:
    assert as_time64(1514764800.0) == 0  # 2018-01-01T00:00:00Z
    assert as_time64(1514764801.5) == SECOND + SECOND // 2
    assert as_posix_s(as_time64(1_700_000_000.25)) == pytest.approx(1_700_000_000.25, abs=1e-8)
    # counter 2e6 ticks after the offset at 2 MHz is one second later
    assert counter_to_posix_s(3_000_000, 0, 1_000_000, 2e6) == pytest.approx(1514764801.0)


def test_configures_and_streams_power() -> None:
    meter, drv, _ = make()
    dev = "u/js220/000415"
    assert drv.opened == {dev: "defaults"}
    assert drv.state[f"{dev}/s/i/range/mode"] == "auto"
    assert drv.state[f"{dev}/s/v/range/mode"] == "auto"  # the reference's JS220 setup: both ranges auto
    assert drv.state[f"{dev}/h/fs"] == 100_000
    assert drv.state[f"{dev}/s/p/ctrl"] == 1
    assert len(drv.subs[f"{dev}/s/p/!data"]) == 1
    assert "JS220" in meter.source and meter.name == "joulescope"
    meter.close()
    assert drv.state[f"{dev}/s/p/ctrl"] == 0
    assert drv.subs[f"{dev}/s/p/!data"] == [] and drv.opened == {}
    assert not drv.finalized  # an injected driver belongs to the caller


def test_js110_selects_its_ranges() -> None:
    dev = "u/js110/000001"
    drv = FakeJoulescopeDriver(pulse, WALL_MINUS_MONO_S, 100.0, devices=[dev])
    meter = JoulescopeMeter(driver=drv)
    assert drv.state[f"{dev}/s/i/range/select"] == "auto"
    assert drv.state[f"{dev}/s/v/range/select"] == "15 V"
    assert not any(topic.endswith("/range/mode") for topic, _ in drv.published)  # JS220 topics only
    meter.close()


def test_pulse_energy_on_host_time_base() -> None:
    meter, drv, _ = make()
    drv.stream(101.0)
    w = meter.energy_mj(100.5, 100.7)
    assert w.valid
    assert w.energy_mj == pytest.approx(400.0, rel=1e-3)  # 2 W * 0.2 s
    assert w.mean_power_mw == pytest.approx(2000.0, rel=1e-3)
    assert w.n_samples == pytest.approx(20_000, abs=2)
    assert "block sum" in w.method
    # the 50 ppm fast counter is absorbed by the time map: edges land on host time
    w = meter.energy_mj(100.4, 100.8)
    assert w.energy_mj == pytest.approx(0.5 * 100 + 2.0 * 200 + 0.5 * 100, rel=1e-3)


def test_window_shorter_than_one_sample_period() -> None:
    meter, drv, _ = make(power=lambda t: 1.5, fs=1000)  # 1 ms samples
    drv.stream(102.0)
    w = meter.energy_mj(100.2101, 100.2103)  # 0.2 ms
    assert w.valid and w.n_samples == 1
    assert w.energy_mj == pytest.approx(1500.0 * 0.0002, rel=1e-6)


def test_ramp() -> None:
    meter, drv, _ = make(power=lambda t: 1.0 + (t - 100.0), fs=10_000)
    drv.stream(101.0)
    w = meter.energy_mj(100.2, 100.6)
    # integral of 1 + t over [0.2, 0.6] in W*s -> mJ
    assert w.energy_mj == pytest.approx(1000.0 * (0.4 + (0.6**2 - 0.2**2) / 2), rel=1e-4)


def test_keyed_windows_and_read() -> None:
    meter, drv, clock = make()
    clock.t_s = 100.5
    meter.begin_window("inference")
    clock.t_s = 100.7
    drv.stream(100.8)
    w = meter.end_window("inference")
    assert w.energy_mj == pytest.approx(400.0, rel=1e-3)
    r = meter.read()
    assert r.total_mw == pytest.approx(500.0) and r.rails_mw == {"joulescope": pytest.approx(500.0)}
    assert r.t_s == pytest.approx(100.8, abs=0.01)


def test_window_before_data_arrives_is_invalid() -> None:
    meter, drv, _ = make()
    drv.stream(100.3)
    assert not meter.energy_mj(100.5, 100.7).valid
    assert meter.read().total_mw == pytest.approx(500.0)


def test_nan_samples_are_skipped() -> None:
    meter, drv, _ = make(power=lambda t: float("nan") if 100.30 <= t < 100.31 else 1.0)
    drv.stream(101.0)
    w = meter.energy_mj(100.0, 100.5)
    assert w.valid and w.energy_mj == pytest.approx(500.0, rel=1e-6)


def test_sampler_over_joulescope_reads() -> None:
    meter, drv, clock = make(power=lambda t: 0.8)
    drv.stream(100.2)
    sampler = Sampler(meter, rate_hz=10, clock=clock)
    clock.t_s = 100.2
    assert sampler.sample_once().total_mw == pytest.approx(800.0)


def test_no_instrument_attached() -> None:
    drv = FakeJoulescopeDriver(pulse, WALL_MINUS_MONO_S, 100.0, devices=[])
    with pytest.raises(SensorMissingError, match="No Joulescope is attached"):
        JoulescopeMeter(driver=drv)


def test_named_device_not_attached() -> None:
    drv = FakeJoulescopeDriver(pulse, WALL_MINUS_MONO_S, 100.0)
    with pytest.raises(SensorMissingError, match="u/js110/000001"):
        JoulescopeMeter(driver=drv, device_path="u/js110/000001")


class _Unresponsive(FakeJoulescopeDriver):
    def open(self, device_prefix, mode=None, timeout=None):  # type: ignore[override]
        raise TimeoutError("open timed out")


def test_instrument_that_does_not_answer() -> None:
    drv = _Unresponsive(pulse, WALL_MINUS_MONO_S, 100.0)
    with pytest.raises(SensorMissingError, match="did not answer"):
        JoulescopeMeter(driver=drv, timeout_s=0.1)


def test_without_the_optional_driver_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pyjoulescope_driver", None)  # import fails
    with pytest.raises(SensorMissingError, match=r"pip install 'pyjoulescope_driver>=2\.1'"):
        JoulescopeMeter()


class _RefusingDriver(FakeJoulescopeDriver):
    """pyjoulescope_driver's binding raises RuntimeError for every jsdrv error code but a timeout: IN_USE (the
    Joulescope UI holds the instrument), PERMISSIONS (no udev rule), IO."""

    def __init__(self, fail_on: str) -> None:
        super().__init__(pulse, WALL_MINUS_MONO_S, 100.0)
        self.fail_on = fail_on

    def open(self, device_prefix, mode=None, timeout=None):
        if self.fail_on == "open":
            raise RuntimeError("jsdrv_open failed 21")
        return super().open(device_prefix, mode, timeout)

    def publish(self, topic, value, timeout=None):
        if self.fail_on == "publish" and topic.endswith("/h/fs"):
            raise RuntimeError("jsdrv_publish failed 4")
        return super().publish(topic, value, timeout)


@pytest.mark.parametrize("fail_on", ["open", "publish"])
def test_a_driver_error_is_one_line_naming_the_fix_and_releases_the_instrument(fail_on: str) -> None:
    drv = _RefusingDriver(fail_on)
    with pytest.raises(SensorMissingError) as err:  # it used to escape as a RuntimeError traceback
        JoulescopeMeter(driver=drv, data_wait_s=0.0)
    msg = str(err.value)
    assert "Joulescope UI" in msg and "udev" in msg and "\n" not in msg
    assert drv.opened == {}


class _Driver20(FakeJoulescopeDriver):
    """pyjoulescope_driver 2.0.x: stream messages without the time map."""

    def subscribe(self, topic, flags, fn, timeout=None):
        def old(topic: str, msg: dict) -> None:
            fn(topic, {k: v for k, v in msg.items() if k != "time_map"})

        super().subscribe(topic, flags, old, timeout)


def test_an_old_driver_is_named_where_windows_are_read() -> None:
    clock = FakeClock(100.0)
    drv = _Driver20(pulse, WALL_MINUS_MONO_S, counter0_host_s=100.0)
    meter = JoulescopeMeter(driver=drv, clock=clock, wall_clock=lambda: clock() + WALL_MINUS_MONO_S, data_wait_s=0.0)
    drv.stream(100.2)  # a KeyError on the driver's thread before; every window then read as unknown
    with pytest.raises(MeterError, match=r"pip install -U 'pyjoulescope_driver>=2\.1'"):
        meter.energy_mj(100.0, 100.1)


def test_the_joulescope_extra_asks_for_the_driver_the_meter_reads() -> None:
    import configparser
    from pathlib import Path

    from edgeexit.energy.joulescope import DRIVER_NEEDED

    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[2] / "setup.cfg")
    assert DRIVER_NEEDED in cfg["options.extras_require"]["joulescope"].split()
