"""The thermal guard and the write-honoured check on the simulated boards (in-process and FUSE)."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeexit.boards.config import load_board
from edgeexit.dvfs import open_board
from edgeexit.errors import ThermalError
from edgeexit.guards import (ThermalGuard, check_honoured, default_limit_mc, expected_freq, parse_measure_clock_hz,
                             snap_to_table)
from edgeexit.sim.sysfs import SimulatedSysfs
from tests.faults.test_write_faults import BACKENDS, board_root
from tests.sim.helpers import BOARDS, make_tree


@pytest.mark.parametrize("backend", BACKENDS)
def test_hot_board_never_raises_but_may_lower(tmp_path: Path, backend: str, capsys: pytest.CaptureFixture) -> None:
    with board_root(tmp_path, backend) as (root, k):
        with open_board("jetson-nano", sysfs_root=root) as s:
            ctl = s.controller
            opps = ctl.cpu_opps_khz()
            assert ctl.set_cpu_khz(opps[4]) == opps[4]
            k.set_temp_mc("CPU-therm", 97500)  # at the zone's 97 °C passive trip
            assert ctl.set_cpu_khz("max") == opps[4]  # held
            assert ctl.cpu_khz() == opps[4] and ctl.thermal_hold
            assert ctl.set_cpu_khz(opps[2]) == opps[2]  # lowering is allowed
            assert ctl.set_cpu_khz(opps[3]) == opps[2]  # held again, same episode
            events = ctl.guard_events
            assert len(events) == 1 and events[0]["zone"] == "CPU-therm" and events[0]["refused"] == 2
            assert events[0]["limit_mc"] == 97000 and events[0]["last_refused"]["to_khz"] == opps[3]
            k.set_temp_mc("CPU-therm", 96000)  # within the 2 °C hysteresis: still hot
            assert ctl.set_cpu_khz("max") == opps[2]
            k.set_temp_mc("CPU-therm", 80000)  # cooled down: the episode ends
            assert ctl.set_cpu_khz("max") == opps[-1] and not ctl.thermal_hold
            k.set_temp_mc("GPU-therm", 101000)  # a second episode, on another zone, also holds the GPU
            assert ctl.set_gpu_hz("max") == ctl.gpu_hz()
            assert [e["zone"] for e in ctl.guard_events] == ["CPU-therm", "GPU-therm"]
            assert ctl.guard_events[0]["t_end_s"] is not None and ctl.guard_events[0]["peak_temp_mc"] == 97500
    err = capsys.readouterr().err
    assert err.count("clocks will not be raised") == 2  # logged once per episode


@pytest.mark.parametrize("backend", BACKENDS)
def test_eagain_zones_are_skipped(tmp_path: Path, backend: str) -> None:
    board = load_board("jetson-orin-nano")
    eagain = [z.type for z in board.thermal_zones if z.read_errno == "EAGAIN"]
    assert eagain, "the Orin Nano config marks its cv*-thermal zones EAGAIN"
    with board_root(tmp_path, backend, "jetson-orin-nano") as (root, k):
        with open_board("jetson-orin-nano", sysfs_root=root, thermal_limit_mc=70000) as s:
            readings = s.guard.read()  # type: ignore[union-attr]
            failed = [r.zone for r in readings if r.temp_mc is None]
            assert sorted(failed) == sorted(eagain)
            cap = s.controller.cpu_cap_khz()  # the boot mode's (25W: 1344000)
            assert s.controller.set_cpu_khz("max") == cap  # cool: allowed
            s.controller.set_cpu_khz("min")
            k.set_temp_mc("gpu-thermal", 75000)  # over the explicit 70 °C limit
            assert s.controller.set_cpu_khz("max") == s.controller.cpu_opps_khz()[0]


def test_unreadable_zones_warn_once_and_do_not_block(tmp_path: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    msgs = []  # type: List[str]
    guard = ThermalGuard(k.board, SimulatedSysfs(k.root, k), warn=msgs.append)
    for z in k.board.thermal_zones:
        (k.root / z.relpath / "temp").write_text("garbage\n" if z.index % 2 else "")
    assert guard.allow_raise("cpu", 1, 2, "khz") and guard.allow_raise("cpu", 1, 2, "khz")
    assert len(msgs) == 1 and "cannot hold clocks" in msgs[0]
    (k.root / k.board.thermal_zones[1].relpath / "temp").write_text("999999999\n")  # implausible: skipped too
    assert guard.allow_raise("cpu", 1, 2, "khz")


@pytest.mark.parametrize("board", BOARDS)
def test_default_limits_come_from_trip_points(board: str) -> None:
    cfg = load_board(board)
    limits = [default_limit_mc(z) for z in cfg.thermal_zones]
    assert any(l is not None for l in limits), board
    for z, l in zip(cfg.thermal_zones, limits):
        if l is not None:
            assert l <= min(t for t, k in zip(z.trips_mc, z.trip_types) if k != "active")
    with pytest.raises(ThermalError, match="millidegrees"):
        ThermalGuard(cfg, SimulatedSysfs.__new__(SimulatedSysfs), limit_mc=85)  # 85 m°C: a unit mistake


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("floor", [True, False])
def test_accepted_but_not_honoured_is_reported(tmp_path: Path, backend: str, floor: bool,
                                               capsys: pytest.CaptureFixture) -> None:
    """Where scaling_cur_freq is the truth (not a Raspberry Pi), the read-back comes from it."""
    with board_root(tmp_path, backend, "jetson-nano") as (root, k):
        with open_board("jetson-nano", sysfs_root=root) as s:
            ctl = s.controller
            opps = ctl.cpu_opps_khz()
            if floor:  # firmware raising the clock above the request (a floor, soft-throttling)
                k.set_firmware_clock("policy0", floor_khz=opps[3])
                asked, runs = opps[0], opps[3]
            else:  # a cap (thermal/firmware) holds the clock below the request
                k.set_firmware_clock("policy0", cap_khz=opps[2])
                asked, runs = opps[-1], opps[2]
            assert ctl.set_cpu_khz(asked) == runs  # the read-back, not the request
            ctl.set_cpu_khz(asked)  # no-op, reported again but warned once
            ev = ctl.honour_events
            assert len(ev) == 2 and ev[0].requested == asked and ev[0].effective == runs
            assert ev[0].source.endswith("scaling_cur_freq")
            k.set_firmware_clock("policy0")  # firmware lets go
            assert ctl.set_cpu_khz(opps[5]) == opps[5] and len(ctl.honour_events) == 2
    assert capsys.readouterr().err.count("did not follow") == 1


def test_honoured_rules_and_vcgencmd_reader(tmp_path: Path) -> None:
    table = [100, 200, 300]
    assert expected_freq(table, 150) == [100, 200] and expected_freq(table, 5) == [100]
    assert expected_freq(table, 999) == [300] and expected_freq([], 7) == [7]
    assert check_honoured("cpu", "khz", table, 150, 100, "x") is None  # floor rounding is fine
    assert "set to 150 khz but runs at 300 khz" in check_honoured("cpu", "khz", table, 150, 300, "x").describe()
    # the clock followed a request its list does not offer: the list is what disagrees, not the clock
    line = check_honoured("cpu", "khz", table, 150, 150, "x").describe()
    assert "runs at the requested 150 khz" in line and "nearest: 100 or 200 khz" in line and "but runs at" not in line
    assert parse_measure_clock_hz("frequency(48)=1500345728\n") == 1500345728
    for bad in ("", "error=1 error_msg=\"Command not registered\"", "frequency(0)=abc", "volt=0.87V"):
        with pytest.raises(ValueError):
            parse_measure_clock_hz(bad)
    # a real Pi's read-back comes from the firmware (vcgencmd), because scaling_cur_freq echoes the request
    k = make_tree(tmp_path / "t", "raspberry-pi-5")
    from edgeexit.dvfs.controller import DvfsController

    ctl = DvfsController(k.board, SimulatedSysfs(k.root, k), actual_cpu_khz=lambda: 1500000, warn=lambda m: None)
    assert ctl.set_cpu_khz("min") == 1500000 and ctl.honour_events[0].source == "vcgencmd measure_clock arm"


def test_firmware_reading_snaps_to_the_table(tmp_path: Path) -> None:
    """The firmware counts the PLL (1500345728 Hz at 1.5 GHz): a clock that close to an entry is that entry, so a
    honoured pin is no event and the planner gets a table entry back (a profile has columns for those only)."""
    from edgeexit.dvfs.controller import DvfsController

    k = make_tree(tmp_path / "t", "raspberry-pi-5")
    measured = {"khz": 1800345}
    ctl = DvfsController(k.board, SimulatedSysfs(k.root, k), actual_cpu_khz=lambda: measured["khz"], warn=lambda m: None)
    assert ctl.set_cpu_khz(1800000) == 1800000 and not ctl.honour_events
    measured["khz"] = 1500345
    assert ctl.set_cpu_khz(1000000) == 1500000 and ctl.honour_events[-1].effective == 1500000
    assert snap_to_table([1500000, 1600000], 1550000) == 1550000  # between entries: as measured


def test_firmware_answer_is_reused_then_asked_again(tmp_path: Path) -> None:
    """vcgencmd forks a process (ms on a Pi): each target's answer is reused for a while, then asked again."""
    from edgeexit.dvfs.controller import DvfsController

    k = make_tree(tmp_path / "t", "raspberry-pi-5")
    calls = []  # type: List[int]

    def firmware() -> int:
        calls.append(1)
        return max(int((k.root / "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq").read_text()), 1500000)

    ctl = DvfsController(k.board, SimulatedSysfs(k.root, k), actual_cpu_khz=firmware, warn=lambda m: None)
    for f in (1800000, 2000000, 1800000, 2000000, 1000000, 1000000):
        ctl.set_cpu_khz(f)
    assert len(calls) == 3 and [e.requested for e in ctl.honour_events] == [1000000, 1000000]
    ctl.firmware_recheck_s = 0.0  # expired: asked again (throttling that began since shows)
    assert ctl.set_cpu_khz(1800000) == 1800000 and len(calls) == 4


def test_firmware_answer_is_refreshed_between_inferences(tmp_path: Path) -> None:
    """A pin in the middle of an inference used to fork vcgencmd whenever its answer was 5 s old: ms on the
    critical path. A planner asks the controller to refresh the clock pinned now in idle time, at half that age,
    so the later pin finds a fresh answer."""
    from edgeexit.dvfs.controller import DvfsController

    k = make_tree(tmp_path / "t", "raspberry-pi-5")
    now, asked = [0.0], []  # type: List[float], List[float]

    def firmware() -> int:
        asked.append(now[0])
        return max(int((k.root / "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq").read_text()), 1500000)

    ctl = DvfsController(k.board, SimulatedSysfs(k.root, k), actual_cpu_khz=firmware, warn=lambda m: None)
    ctl.clock = lambda: now[0]
    ctl.set_cpu_khz(1800000)  # t 0: asked
    now[0] = 1.0
    ctl.refresh_firmware_khz()  # young: not asked
    now[0] = 3.0
    ctl.refresh_firmware_khz()  # past half of 5 s: asked, in idle time
    now[0] = 5.5
    assert ctl.set_cpu_khz(1800000) == 1800000  # a mid-inference pin: the answer from t 3 is reused
    assert asked == [0.0, 3.0]
    flaky = []  # type: List[float]
    ctl._actual_cpu_khz = lambda: flaky.append(now[0])  # vcgencmd stops answering: asked once per half-life
    for t in (8.6, 8.7, 8.8):
        now[0] = t
        ctl.refresh_firmware_khz()
    assert flaky == [8.6]
    silent = DvfsController(k.board, SimulatedSysfs(k.root, k), actual_cpu_khz=lambda: None, warn=lambda m: None)
    silent.set_cpu_khz(1800000)
    silent.refresh_firmware_khz()  # vcgencmd does not answer here: no fork per inference for nothing


def test_firmware_silence_is_said_once(tmp_path: Path) -> None:
    """No answer from vcgencmd (not installed, no access to the firmware): said once, then cpufreq's read-back."""
    from edgeexit.dvfs.controller import DvfsController

    k = make_tree(tmp_path / "t", "raspberry-pi-5")
    said = []  # type: List[str]
    ctl = DvfsController(k.board, SimulatedSysfs(k.root, k), actual_cpu_khz=lambda: None, warn=said.append)
    assert ctl.set_cpu_khz(1000000) == 1000000 and ctl.set_cpu_khz(1800000) == 1800000
    assert len(said) == 1 and "did not answer" in said[0] and "video group" in said[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_simulated_pi5_firmware_floor_is_read_back_from_vcgencmd(tmp_path: Path, backend: str,
                                                                 capsys: pytest.CaptureFixture) -> None:
    """The simulated Pi 5 answers `vcgencmd measure_clock arm` as its firmware would: a pin below the
    1.5 GHz floor is read back as 1.5 GHz and warned about, though scaling_cur_freq echoes the request."""
    with board_root(tmp_path, backend, "raspberry-pi-5") as (root, k):
        with open_board("raspberry-pi-5", sysfs_root=root) as s:
            ctl = s.controller
            assert ctl.set_cpu_khz(1000000) == 1500000
            assert (Path(root) / "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq").read_text() == "1000000\n"
            assert ctl.cpu_khz() == 1000000 and ctl.running_cpu_khz() == 1500000  # what cpufreq shows, what runs
            ev = ctl.honour_events
            assert len(ev) == 1 and ev[0].source == "vcgencmd measure_clock arm" and ev[0].effective == 1500000
            assert ctl.set_cpu_khz(1100000) == 1500000 and len(ctl.honour_events) == 2  # recorded, not warned again
            assert ctl.set_cpu_khz(1800000) == 1800000 and len(ctl.honour_events) == 2  # above the floor: honoured
            assert ctl.running_cpu_khz() == 1800000
            k.set_firmware_clock("policy0", cap_khz=1600000)  # a firmware cap shows in vcgencmd too
            assert ctl.set_cpu_khz(2400000) == 1600000 and ctl.honour_events[-1].effective == 1600000
            k.set_firmware_clock("policy0")  # the cap lifts, and another tool sets the clock
            k.write("sys/devices/system/cpu/cpufreq/policy0/scaling_setspeed", b"2000000")
            assert ctl.running_cpu_khz() == ctl.cpu_khz() == 2000000  # changed since edgeexit's pin: cpufreq's
    assert capsys.readouterr().err.count("did not follow") == 2


def test_simulated_vcgencmd_answers_like_the_firmware(tmp_path: Path) -> None:
    from edgeexit.boards.vcgencmd import arm_clock_reader
    from edgeexit.energy.pi5_pmic import Pi5PmicMeter
    from edgeexit.errors import SensorMissingError
    from edgeexit.sim.vcgencmd import simulated_vcgencmd

    pi4 = make_tree(tmp_path / "pi4", "raspberry-pi-4")
    run = simulated_vcgencmd(pi4.root)
    cur_khz = int((pi4.root / "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq").read_text())
    assert arm_clock_reader(run)() == cur_khz  # no firmware floor on the Pi 4
    assert "not registered" in run(["vcgencmd", "pmic_read_adc"])  # the Pi 4 has no PMIC ADC
    with pytest.raises(SensorMissingError, match="no PMIC"):
        Pi5PmicMeter(runner=run)
    assert arm_clock_reader(lambda argv: run(["vcgencmd", "bogus"]))() is None


def _plain_nano(tmp_path: Path) -> Path:
    """A Nano tree read as a real board's files (no simulated kernel behind it)."""
    import shutil

    root = make_tree(tmp_path / "t", "jetson-nano").root
    shutil.rmtree(str(root / ".edgeexit-sim"))
    return root


def test_zones_are_found_by_their_type_not_their_number(tmp_path: Path) -> None:
    """The kernel numbers zones in device-tree order, which the config only assumes: read by number,
    one sensor showed (and was guarded) under another's name."""
    from edgeexit.boards.sysfs import HostSysfs

    root = _plain_nano(tmp_path)
    zones = root / "sys/class/thermal"
    (zones / "thermal_zone1").rename(zones / "swap")
    (zones / "thermal_zone2").rename(zones / "thermal_zone1")
    (zones / "swap").rename(zones / "thermal_zone2")  # CPU-therm is zone 2 now, GPU-therm zone 1
    (zones / "thermal_zone2/temp").write_text("97500\n")  # the CPU at its 97 °C passive trip
    (zones / "thermal_zone1/temp").write_text("40000\n")
    import shutil
    shutil.rmtree(str(zones / "thermal_zone3"))  # PLL-therm gone
    board = load_board("jetson-nano")
    guard = ThermalGuard(board, HostSysfs(root), warn=lambda m: None)
    got = {r.zone: (r.relpath.rsplit("/", 1)[1], r.temp_mc, r.error) for r in guard.read()}
    assert got["CPU-therm"] == ("thermal_zone2", 97500, None)
    assert got["GPU-therm"] == ("thermal_zone1", 40000, None)
    assert got["PLL-therm"][1:] == (None, "absent: no thermal zone of this type")
    assert not guard.allow_raise("cpu", 1, 2, "khz")  # the hot CPU holds the clocks
    for z in zones.iterdir():  # no type readable: the config's numbering is all there is
        (z / "type").unlink()
    guard = ThermalGuard(board, HostSysfs(root), warn=lambda m: None)
    assert {r.zone: r.temp_mc for r in guard.read()}["CPU-therm"] == 40000


def test_an_explicit_limit_leaves_a_pmic_zone_its_own(tmp_path: Path) -> None:
    """The Nano's PMIC-Die reads a fixed 100 °C: under an explicit 85 °C limit every raise was refused."""
    from edgeexit.boards.sysfs import HostSysfs

    root = _plain_nano(tmp_path)
    board = load_board("jetson-nano")
    pmic = next(z for z in board.thermal_zones if z.role == "pmic")
    (root / pmic.relpath / "temp").write_text("100000\n")
    guard = ThermalGuard(board, HostSysfs(root), limit_mc=85000, warn=lambda m: None)
    assert guard.zone_limit_mc(pmic) == default_limit_mc(pmic) == 110000
    assert guard.allow_raise("cpu", 1, 2, "khz")
    cpu = next(z for z in board.thermal_zones if z.type == "CPU-therm")
    (root / cpu.relpath / "temp").write_text("86000\n")
    assert not guard.allow_raise("cpu", 1, 2, "khz")
