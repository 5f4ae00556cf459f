"""Offline attribution of a Joulescope .jls recording (written here with pyjls.Writer, as the
driver's Record does) to host-time inference windows."""
from __future__ import annotations

from pathlib import Path
import numpy as np
import pyjls
import pytest

from edgeexit.energy.jls import jls_energy_windows
from edgeexit.energy.time64 import as_time64
from edgeexit.errors import MeterError

HOST_OFFSET_S = 1_700_000_000.0  # time.time() - time.monotonic() on the host during the run
FS = 10_000
SID0 = 123_456  # recordings start at the driver's sample id, not 0
DRIFT = 1e-4  # the instrument's samples are 100 ppm longer than nominal on the host clock


def host_time_of(n: np.ndarray) -> np.ndarray:
    """Host monotonic time (s) at the start of recorded sample n (0-based)."""
    return 100.0 + n / FS * (1 + DRIFT)


def power_w(t: np.ndarray) -> np.ndarray:
    return np.where((t >= 100.5) & (t < 101.0), 3.0, 1.0)


def write_recording(path: Path, signals: dict, seconds: float = 2.0) -> None:
    """Write FSR signals like pyjoulescope_driver.record.Record: utc anchor once a second."""
    n_total = int(seconds * FS)
    with pyjls.Writer(str(path)) as wr:
        wr.source_def(source_id=1, name="JS220-000415", vendor="Jetperch", model="JS220",
                      version="", serial_number="000415")
        for signal_id, (name, (units, fn)) in enumerate(signals.items(), start=1):
            wr.signal_def(signal_id=signal_id, source_id=1, signal_type=pyjls.SignalType.FSR,
                          data_type=pyjls.DataType.F32, sample_rate=FS, name=name, units=units)
            for start in range(0, n_total, FS):
                n = np.arange(start, min(start + FS, n_total))
                mid = host_time_of(n + 0.5)
                wr.utc(signal_id, SID0 + start, as_time64(host_time_of(np.array([start]))[0] + HOST_OFFSET_S))
                wr.fsr_f32(signal_id, SID0 + start, fn(mid).astype(np.float32))
            wr.utc(signal_id, SID0 + n_total, as_time64(host_time_of(np.array([n_total]))[0] + HOST_OFFSET_S))


@pytest.fixture
def power_jls(tmp_path: Path) -> Path:
    path = tmp_path / "run.jls"
    write_recording(path, {"power": ("W", power_w)})
    return path


def test_energy_per_window(power_jls: Path) -> None:
    w_pulse, w_edges, w_short = jls_energy_windows(
        power_jls, [(100.5, 101.0), (100.4, 100.6), (100.70001, 100.70003)], host_offset_s=HOST_OFFSET_S
    )
    assert w_pulse.valid and w_pulse.energy_mj == pytest.approx(1500.0, rel=1e-3)
    assert w_pulse.mean_power_mw == pytest.approx(3000.0, rel=1e-3)
    assert w_pulse.n_samples == pytest.approx(5000, abs=2)
    assert w_edges.energy_mj == pytest.approx(0.1 * 1000 + 0.1 * 3000, rel=1e-3)
    # 20 us inside one 100 us sample at 3 W
    assert w_short.valid and w_short.n_samples == 1
    assert w_short.energy_mj == pytest.approx(3000.0 * 20e-6, rel=1e-6)
    assert "block sum" in w_pulse.method and w_pulse.source == "joulescope-jls"
    assert (w_pulse.t0_s, w_pulse.t1_s) == (100.5, 101.0)  # reported in host time


def test_drift_is_followed_through_the_file_time_map(power_jls: Path) -> None:
    # late in the recording, nominal 1/FS timing would be off by 100 ppm * 1.9 s = 190 us
    (w,) = jls_energy_windows(power_jls, [(100.9995, 101.0005)], host_offset_s=HOST_OFFSET_S)
    assert w.energy_mj == pytest.approx(0.0005 * 3000 + 0.0005 * 1000, rel=0.05)


def test_window_outside_the_recording_is_invalid(power_jls: Path) -> None:
    inside, outside, partly = jls_energy_windows(
        power_jls, [(100.0, 101.9), (105.0, 106.0), (101.5, 103.0)], host_offset_s=HOST_OFFSET_S
    )
    assert inside.valid
    assert not outside.valid and outside.energy_mj == 0.0
    assert not partly.valid


def test_power_from_current_and_voltage(tmp_path: Path) -> None:
    path = tmp_path / "iv.jls"
    write_recording(path, {
        "current": ("A", lambda t: np.full_like(t, 0.2)),
        "voltage": ("V", lambda t: np.full_like(t, 5.0)),
    })
    (w,) = jls_energy_windows(path, [(100.2, 101.2)], host_offset_s=HOST_OFFSET_S)
    assert w.valid and w.energy_mj == pytest.approx(1000.0, rel=1e-4)


def test_recording_without_power_names_what_it_has(tmp_path: Path) -> None:
    path = tmp_path / "i.jls"
    write_recording(path, {"current": ("A", lambda t: np.full_like(t, 0.2))})
    with pytest.raises(MeterError, match=r"current \(A\)"):
        jls_energy_windows(path, [(100.2, 100.3)], host_offset_s=HOST_OFFSET_S)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MeterError, match="does not exist"):
        jls_energy_windows(tmp_path / "nope.jls", [(0.0, 1.0)])


def test_not_a_jls_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jls"
    bad.write_text("not a recording")
    with pytest.raises(MeterError, match="Cannot read"):
        jls_energy_windows(bad, [(0.0, 1.0)])


def test_current_and_voltage_of_unequal_length(tmp_path: Path) -> None:
    # A recording stopped mid-stream can end its signals a chunk apart (here voltage 1000 samples early).
    path = tmp_path / "uneven.jls"
    with pyjls.Writer(str(path)) as wr:
        wr.source_def(source_id=1, name="JS220-000415", vendor="Jetperch", model="JS220",
                      version="", serial_number="000415")
        for sid, name, units, value, n_total in ((1, "current", "A", 0.2, 20_000), (2, "voltage", "V", 5.0, 19_000)):
            wr.signal_def(signal_id=sid, source_id=1, signal_type=pyjls.SignalType.FSR,
                          data_type=pyjls.DataType.F32, sample_rate=FS, name=name, units=units)
            for start in range(0, n_total, 1000):
                wr.utc(sid, start, as_time64(100.0 + start / FS + HOST_OFFSET_S))
                wr.fsr_f32(sid, start, np.full(1000, value, dtype=np.float32))
            wr.utc(sid, n_total, as_time64(100.0 + n_total / FS + HOST_OFFSET_S))
    inside, past_voltage, straddling = jls_energy_windows(
        path, [(101.0, 101.5), (101.95, 101.99), (101.8, 101.95)], host_offset_s=HOST_OFFSET_S
    )
    assert inside.valid and inside.energy_mj == pytest.approx(500.0, rel=1e-4)
    assert not past_voltage.valid and past_voltage.energy_mj == 0.0  # current only: no power there
    assert not straddling.valid  # 0.1 s of 0.15 s covered


def test_pyjls_errors_while_reading_are_one_line_meter_errors(power_jls: Path, tmp_path: Path) -> None:
    # Cut in half, as a copy interrupted mid-file: pyjls opens it, then its index lookups raise RuntimeError.
    cut = tmp_path / "cut.jls"
    data = power_jls.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MeterError, match=r"cut\.jls .*truncated or damaged; record the run again") as err:
        jls_energy_windows(cut, [(100.5, 101.0)], host_offset_s=HOST_OFFSET_S)
    assert "\n" not in str(err.value)
