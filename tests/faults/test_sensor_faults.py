"""Power sensors that fail, stall or return garbage: "energy unknown" with a warning, never a wrong
number, never a crash or a hang."""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from pathlib import Path
from typing import List

import pytest

from edgeexit.energy.factory import meter_for_board
from edgeexit.energy.meter import PowerMeter
from edgeexit.energy.pi5_pmic import Pi5PmicMeter
from edgeexit.energy.reading import PowerReading
from edgeexit.energy.sampler import Sampler
from edgeexit.errors import MeterError
from edgeexit.probes import MeterProbe
from edgeexit.sim.kernel import SimulatedKernel
from tests.sim.helpers import fuse_mount, make_tree


def _input_file(k: SimulatedKernel) -> Path:
    chip = k.board.power.ina3221[0]
    ch = chip.channels.index(k.board.power.input_rail)
    name = "in_power{}_input".format(ch) if chip.driver == "ina3221x" else "curr{}_input".format(ch + 1)
    return k.root / chip.relpath / name


def _meter(k: SimulatedKernel, root: Path, clock=time.monotonic):  # type: ignore[no-untyped-def]
    return meter_for_board(dataclasses.asdict(k.board.power), root, clock=clock)


@pytest.mark.parametrize("board", ["jetson-nano", "jetson-orin-nano"])
@pytest.mark.parametrize("garbage", ["", "nan", "-nan\n", "inf", "12abc", "99999999999", "\xff\xfe", "1e400"])
def test_garbage_reads_are_invalid_not_numbers(tmp_path: Path, board: str, garbage: str) -> None:
    k = make_tree(tmp_path / "t", board)
    meter = _meter(k, k.root)
    assert meter.read().valid
    _input_file(k).write_bytes(garbage.encode("latin-1"))
    r = meter.read()
    assert r.total_mw is None and k.board.power.input_rail in r.failed_rails


@pytest.mark.fuse
def test_eagain_read_through_fuse_is_one_invalid_sample(tmp_path: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-orin-nano")
    with fuse_mount(k.root, "jetson-orin-nano", tmp_path / "mnt") as mnt:
        meter = _meter(k, mnt)
        assert meter.read().valid
        k.inject_error(str(_input_file(k).relative_to(k.root)), "EAGAIN", op="read")
        assert not meter.read().valid
        assert meter.read().valid  # transient: the next read is fine


def test_vanished_hwmon_number_after_driver_reload(tmp_path: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-orin-nano")
    now = [0.0]
    meter = _meter(k, k.root, clock=lambda: now[0])
    assert meter.read().valid
    node = k.root / k.board.power.ina3221[0].relpath  # .../hwmon/hwmon1
    moved = tmp_path / "unbound"
    node.rename(moved)  # driver unbound: the directory is gone
    assert not meter.read().valid
    moved.rename(node.parent / "hwmon4")  # rebound under a new number
    now[0] += 0.5
    assert not meter.read().valid  # rescans are rate-limited (once a second)
    now[0] += 1.0
    r = meter.read()
    assert r.valid and meter.relocations == 1 and "hwmon4" in str(meter.rails[0].voltage_path)


class _Scripted(PowerMeter):
    """A meter whose reads follow a script: a number (mW), "raise", or "stall" (blocks until released)."""

    name = "scripted"
    source = "test"
    total_basis = "test"

    def __init__(self, script: List[object]) -> None:
        super().__init__()
        self.script = itertools.cycle(script)
        self.release = threading.Event()

    def read(self) -> PowerReading:
        step = next(self.script)
        if step == "raise":
            raise OSError(11, "Resource temporarily unavailable")
        if step == "stall":
            self.release.wait(30)
            return PowerReading(self.clock(), {}, None, self.total_basis)
        return PowerReading(self.clock(), {"in": float(step)}, float(step), self.total_basis)  # type: ignore[arg-type]


def test_stalled_read_does_not_hang_the_run() -> None:
    warnings = []  # type: List[str]
    meter = _Scripted(["stall"])
    sampler = Sampler(meter, rate_hz=100.0, read_timeout_s=0.2, warn=warnings.append).start()
    try:
        t0 = time.monotonic()
        for i in range(3):
            sampler.begin_window("w{}".format(i))
            w = sampler.end_window("w{}".format(i))
            assert not w.valid and w.energy_mj == 0.0
        assert time.monotonic() - t0 < 10.0  # bounded by the timeouts, not by the stuck read
        assert sampler.stalls >= 1 and len(warnings) == 1 and "longer than" in warnings[0]
    finally:
        meter.release.set()
        sampler.close()


def test_failing_reads_give_unknown_windows_and_one_warning() -> None:
    warnings = []  # type: List[str]
    t = [0.0]
    sampler = Sampler(_Scripted(["raise"]), rate_hz=10.0, clock=lambda: t[0], warn=warnings.append)
    for i in range(5):
        sampler.sample_once()
        t[0] += 0.1
        w = sampler.energy_mj(t[0] - 0.1, t[0])
        assert not w.valid
    assert len(warnings) == 1 and "unknown" in warnings[0] and sampler.invalid_windows == 5
    good = Sampler(_Scripted([1000.0]), rate_hz=10.0, clock=lambda: t[0], warn=warnings.append)
    good.sample_once()
    t[0] += 0.1
    good.sample_once()
    assert good.energy_mj(t[0] - 0.1, t[0]).valid and len(warnings) == 1


def test_a_dead_meter_counts_each_unknown_window_of_a_period_once() -> None:
    # Audit defect: the probe integrated the idle window once to close it and once from the inference
    # window's end, so every period counted three unknown windows for its two.
    t = [0.0]

    def sleep(s: float) -> None:
        t[0] += s

    sampler = Sampler(_Scripted(["raise"]), rate_hz=10.0, clock=lambda: t[0], warn=lambda msg: None)
    probe = MeterProbe(sampler, "scripted", period_ms=100.0, sleep=sleep)
    recs = []
    for _ in range(3):
        probe.before_inference()
        t[0] += 0.02
        probe.end(None, None)  # type: ignore[arg-type]
        recs += probe.hold(probe.measure(None))  # type: ignore[arg-type]
    recs += probe.flush()
    assert len(recs) == 3
    for rec in recs:
        assert rec["energy_mj"] is None and rec["idle_energy_mj"] is None and rec["energy_period_mj"] is None
    assert sampler.invalid_windows == 6  # an inference and an idle window per period


@pytest.mark.parametrize("answer", ["", "garbage\n", "VDD_CORE_A current(7)=nanA\nVDD_CORE_V volt(15)=0.7V\n", "raise"])
def test_pi5_pmic_faults_are_invalid_readings(answer: str) -> None:
    good = "VDD_CORE_A current(7)=0.75000000A\nVDD_CORE_V volt(15)=0.72000000V\nEXT5V_V volt(24)=5.09V\nBATT_V volt(25)=nanV\n"
    answers = iter([good, answer])

    def runner(argv):  # type: ignore[no-untyped-def]
        a = next(answers)
        if a == "raise":
            raise MeterError("vcgencmd timed out")
        return a

    meter = Pi5PmicMeter(runner=runner, rails=["VDD_CORE"])
    r = meter.read()
    assert r.total_mw is None and r.failed_rails == ["VDD_CORE"]


def test_a_meter_slower_than_the_sampling_period_still_measures_with_one_warning() -> None:
    """vcgencmd forks a process per read: a read may take longer than --meter-rate-hz's period. Windows
    are then bracketed by reads about one read time away; they stay valid, and the user is told once."""
    warnings = []  # type: List[str]
    t = [0.0]

    class Slow(_Scripted):
        def read(self) -> PowerReading:
            t[0] += 0.03  # 30 ms per read, against a 5 ms period at 200 Hz
            return super().read()

    sampler = Sampler(Slow([2000.0]), rate_hz=200.0, clock=lambda: t[0], warn=warnings.append)
    for i in range(5):
        sampler.begin_window("w{}".format(i))
        t[0] += 0.001  # a 1 ms inference
        w = sampler.end_window("w{}".format(i))
        assert w.valid and w.energy_mj == pytest.approx(2.0 * 1.0, rel=1e-6), i  # 2000 mW for 1 ms
    assert len(warnings) == 1 and "30.0 ms per read" in warnings[0] and "--meter-rate-hz 200" in warnings[0]
    assert sampler.gap_s() == pytest.approx(0.06)
    stuck = Sampler(_Scripted([1000.0]), rate_hz=200.0, clock=lambda: t[0], warn=warnings.append)
    for _ in range(3):
        stuck._note_read_time(30.0)  # a hung read that came back: trusted no further than 0.25 s
    assert stuck.gap_s() == pytest.approx(0.25)
