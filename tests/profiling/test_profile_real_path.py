"""The real-board path of `edgeexit profile`: host-timed invokes, meter windows, idle power per OPP.

A "real" board here is a tree laid out like the board's sysfs with plain files and no simulator
marker (the sim tree with `.edgeexit-sim/` removed), so edgeexit treats it as hardware: plain file
I/O, host clock, the INA3221 meter reading whatever the files hold. The files hold constant rail
readings, so the known answer is: busy and idle power equal that constant.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path

import pytest

from edgeexit.boards.config import load_board
from edgeexit.boards.profile import load_profile
from edgeexit.bundle import load_bundle
from edgeexit.costmodel import PhysicsCostModel, load_profile_json
from edgeexit.dvfs import open_board
from edgeexit.paths import demo_bundle_dir
from edgeexit.energy.sampler import SLOW_READ_GAP_CAP_S, Sampler
from edgeexit.errors import CalibrationError
from edgeexit.profiling import WINDOW_ATTEMPTS, board_meter, profile_bundle
from edgeexit.runtime import Runtime
from edgeexit.sim.kernel import SIM_DIR
from edgeexit.sim.physics import BoardPhysics
from tests.cli.helpers import assert_one_line_error, edgeexit, json_out

def _plain_tree(tmp_path: Path, board: str) -> Path:
    tree = tmp_path / board
    json_out(edgeexit("sim", "init", "--board", board, "--json", str(tree)))
    shutil.rmtree(str(tree / SIM_DIR))  # no marker: edgeexit now treats the tree as a real board
    return tree


def test_real_path_with_meter_known_answer(tmp_path: Path):
    tree = _plain_tree(tmp_path, "jetson-nano")
    shutil.copytree(str(demo_bundle_dir()), str(tmp_path / "bundle"))  # a snapshot: the profile names its manifest
    bundle = load_bundle(tmp_path / "bundle")
    ticks = []
    with open_board("jetson-nano", tree) as session:
        assert not session.simulated
        meter = board_meter(session)
        idle_input_mw = meter.read().total_mw  # the tree's constant POM_5V_IN reading: the known answer
        assert idle_input_mw and idle_input_mw > 0
        # Power is constant here, so samples may lie far from a window's edges: a loaded machine delays the
        # sampler thread past the default two periods (20 ms), which nulled windows (this test was flaky).
        with Sampler(meter, rate_hz=100.0, max_gap_s=1.0) as sampler, Runtime(bundle, num_threads=1) as rt:
            data = profile_bundle(bundle, session, rt, threads=1, repeats=3, sampler=sampler,
                                  on_progress=ticks.append, energy_window_s=0.005, idle_window_s=0.02, settle_s=0.0)
        assert session.controller.cpus[0].governor() == "userspace"  # pinned while profiling
    n_opps = len(data["cpu_opps_khz"])
    assert data["passes"] == 2 and len(ticks) == 2 * n_opps * len(data["segments"])  # ascending, then descending
    assert data["simulated"] is False and data["latency_source"] == "host"
    assert data["energy_source"] == meter.source and data["energy_basis"] == meter.total_basis
    assert data["busy_power_mw"] is not None and data["idle_power_mw"] is not None, data["notes"]
    assert data["busy_power_mw"] == pytest.approx([idle_input_mw] * n_opps)
    assert data["idle_power_mw"] == pytest.approx([idle_input_mw] * n_opps)
    for seg in data["segments"].values():
        assert all(x > 0 for x in seg["latency_ms"]) and all(e > 0 for e in seg["energy_mj"])
        # Audit defect: the window's energy (warm-up invoke, set_tensor and timer reads included) was divided
        # by the timed invokes: 1.2x to 2.8x the power times the latency on this constant-power tree.
        assert seg["energy_mj"] == pytest.approx([idle_input_mw * ms / 1e3 for ms in seg["latency_ms"]], rel=1e-6)
    # pinned every OPP in turn through the controller, and the session restored the governor
    assert (tree / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor").read_text().strip() == "schedutil"
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    cost = load_profile_json(path, bundle, "jetson-nano")  # measured power: no fallback needed
    assert cost.busy_mw(data["cpu_opps_khz"][0]) == pytest.approx(idle_input_mw)
    assert cost.source.endswith("power measured with {}: {})".format(meter.source, meter.total_basis))  # what it covers, too


def test_real_path_without_meter_leaves_energy_null(tmp_path: Path):
    tree = _plain_tree(tmp_path, "jetson-nano")
    out = json_out(edgeexit("profile", "--board", "jetson-nano", "--sysfs-root", str(tree), "--meter", "none",
                            "--repeats", "2", "--out", str(tmp_path / "p.json"), "--json"))
    data = out["profile"]
    assert out["simulated"] is False and data["energy_source"] is None
    assert data["busy_power_mw"] is None and data["idle_power_mw"] is None
    assert all(seg["energy_mj"] is None for seg in data["segments"].values())
    assert any("no power meter" in n for n in data["notes"])
    bundle = load_bundle(None)
    with pytest.raises(CalibrationError, match="no power figures"):
        load_profile_json(tmp_path / "p.json", bundle, "jetson-nano")
    physics = BoardPhysics(load_profile(load_board("jetson-nano")), threads=1)
    cost = load_profile_json(tmp_path / "p.json", bundle, "jetson-nano", fallback=PhysicsCostModel(physics, bundle))
    assert cost.busy_mw(1479000) == pytest.approx(physics.power(1479000, True).total_mw)


def test_pi4_without_sensor_warns_and_profiles_latency(tmp_path: Path):
    tree = _plain_tree(tmp_path, "raspberry-pi-4")
    p = edgeexit("profile", "--board", "raspberry-pi-4", "--sysfs-root", str(tree), "--repeats", "1",
                 "--out", str(tmp_path / "p.json"))
    assert p.returncode == 0, p.stderr
    assert "no on-board power sensor" in p.stderr and "latency only" in p.stderr
    assert "SIMULATED" not in p.stdout and "energy: not measured" in p.stdout
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["energy_source"] is None and data["latency_source"] == "host"


def test_pi4_explicit_meter_fails_in_one_line(tmp_path: Path):
    from tests.cli.helpers import assert_one_line_error

    tree = _plain_tree(tmp_path, "raspberry-pi-4")
    assert_one_line_error(edgeexit("profile", "--board", "raspberry-pi-4", "--sysfs-root", str(tree), "--meter",
                                   "ina3221", "--out", str(tmp_path / "p.json")), "error")


class _Starved(Sampler):
    """A sampler whose thread misses the first ``misses`` windows of each given kind, as when a segment's
    invoke loop holds the GIL past the sampler's gap: those windows have no valid samples."""

    def __init__(self, *args, misses=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.misses = dict(misses or {})
        self.keys = []
        self._starving = False

    def energy_mj(self, t0_s, t1_s):
        window = super().energy_mj(t0_s, t1_s)
        return dataclasses.replace(window, valid=False) if self._starving else window

    def end_window(self, key):
        self.keys.append(key)
        kind = key.rsplit("-", 1)[0]
        self._starving = self.misses.get(kind, 0) > 0
        if self._starving:
            self.misses[kind] -= 1
        return super().end_window(key)


def _profile_with(tmp_path: Path, misses):
    tree = _plain_tree(tmp_path, "jetson-nano")
    bundle = load_bundle(None)
    with open_board("jetson-nano", tree) as session:
        meter = board_meter(session)
        with _Starved(meter, rate_hz=100.0, max_gap_s=1.0, misses=misses) as sampler, \
                Runtime(bundle, num_threads=1) as rt:
            data = profile_bundle(bundle, session, rt, threads=1, repeats=1, sampler=sampler,
                                  energy_window_s=0.002, idle_window_s=0.01, settle_s=0.0)
    return data, sampler.keys, meter.read().total_mw


FIRST_KHZ = 102000  # the Nano's lowest CPU operating point: profiled first


def test_a_window_without_samples_is_measured_again(tmp_path: Path):
    """One starved window (a segment's, or an idle one) nulled every busy and idle power of the profile."""
    data, keys, mw = _profile_with(tmp_path, {"profile-{}-block0-0".format(FIRST_KHZ): 1,
                                              "profile-idle-{}-0".format(FIRST_KHZ): 2})
    assert data["cpu_opps_khz"][0] == FIRST_KHZ
    # (pass, attempt): pass 0 measured it again; pass 1, descending, came back to it last
    assert [k for k in keys if k.startswith("profile-{}-block0-".format(FIRST_KHZ))] == [
        "profile-{}-block0-{}".format(FIRST_KHZ, pa) for pa in ("0-0", "0-1", "1-0")]
    assert "profile-idle-{}-0-2".format(FIRST_KHZ) in keys
    assert keys.index("profile-idle-{}-1-0".format(FIRST_KHZ)) > keys.index("profile-idle-1479000-1-0")
    assert data["busy_power_mw"] == pytest.approx([mw] * len(data["cpu_opps_khz"]))
    assert data["idle_power_mw"] == pytest.approx([mw] * len(data["cpu_opps_khz"]))
    assert all(e is not None for seg in data["segments"].values() for e in seg["energy_mj"])
    assert not any("good reads" in n for n in data["notes"])


def test_a_window_one_pass_missed_is_taken_from_the_other(tmp_path: Path):
    data, keys, mw = _profile_with(tmp_path, {"profile-{}-exit0-0".format(FIRST_KHZ): WINDOW_ATTEMPTS})
    assert keys.count("profile-{}-exit0-0-{}".format(FIRST_KHZ, WINDOW_ATTEMPTS - 1)) == 1
    assert data["busy_power_mw"] == pytest.approx([mw] * len(data["cpu_opps_khz"]))
    assert data["segments"]["exit0"]["energy_mj"][0] == pytest.approx(mw * data["segments"]["exit0"]["latency_ms"][0] / 1e3)
    assert not any("good reads" in n for n in data["notes"])


def test_a_window_that_never_gets_samples_leaves_power_null_and_says_which(tmp_path: Path):
    data, keys, _ = _profile_with(tmp_path, {"profile-{}-exit0-{}".format(FIRST_KHZ, p): WINDOW_ATTEMPTS
                                             for p in (0, 1)})
    assert keys.count("profile-{}-exit0-1-{}".format(FIRST_KHZ, WINDOW_ATTEMPTS - 1)) == 1
    assert data["busy_power_mw"] is None and data["idle_power_mw"] is None
    assert data["segments"]["exit0"]["energy_mj"] is None
    assert data["segments"]["block0"]["energy_mj"] is not None
    assert any("fewer than 3 good reads inside 1 window(s) in {} attempts each in every pass (first: {} kHz exit0)".format(
        WINDOW_ATTEMPTS, FIRST_KHZ) in n for n in data["notes"]), data["notes"]


def test_a_simulated_profile_never_plans_a_real_board(tmp_path: Path):
    """A profile modelled on a simulated board, put where a real board's runs look (or passed with --profile),
    was planned from on the board with no word: the real board ran on the simulator's figures."""
    from tests.cli.helpers import assert_one_line_error

    tree = _plain_tree(tmp_path, "jetson-nano")
    bundle = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(bundle))
    real_name = bundle / "profiles" / "jetson-nano.json"
    # `profile` refuses to write a simulated profile where the real board's runs look, for any thread count
    for name in (real_name, bundle / "profiles" / "jetson-nano-2threads.json"):
        p = edgeexit("profile", "--board", "jetson-nano", "--simulate", "--model", str(bundle), "--out", str(name))
        assert_one_line_error(p, "where runs on a real jetson-nano look", "leave --out out")
        assert not name.exists()
    sim = json_out(edgeexit("profile", "--board", "jetson-nano", "--simulate", "--model", str(bundle), "--json"))
    assert sim["simulated"] and Path(sim["profile_path"]).name == "jetson-nano-simulated.json"
    run = ("run", "--board", "jetson-nano", "--sysfs-root", str(tree), "--model", str(bundle), "--policy", "predictive",
           "--deadline-ms", "5", "--meter", "none", "--limit", "2")
    assert_one_line_error(edgeexit(*run, "--profile", sim["profile_path"]), "modelled on a simulated jetson-nano",
                          "sudo edgeexit profile --board jetson-nano")
    shutil.copyfile(sim["profile_path"], str(real_name))  # put there by hand
    assert_one_line_error(edgeexit(*run), "modelled on a simulated jetson-nano")
    p = edgeexit("bench", "--board", "jetson-nano", "--sysfs-root", str(tree), "--model", str(bundle), "--meter", "none",
                 "--out", str(tmp_path / "bench"))
    assert_one_line_error(p, "modelled on a simulated jetson-nano")
    # the simulated board itself still plans from it
    assert json_out(edgeexit("run", "--board", "jetson-nano", "--simulate", "--model", str(bundle), "--policy",
                             "predictive", "--deadline-ms", "5", "--limit", "2", "--json"))["cost_model"].startswith("profile")


@pytest.mark.parametrize("outage", [False, True])
def test_a_segment_window_is_judged_by_the_reads_inside_it(tmp_path: Path, monkeypatch, outage: bool):
    """A meter that reads BUSY while a segment's invoke loop runs and IDLE between loads, as a real sensor does
    (its read takes 0.2 ms, as an INA3221's file reads do here). The edge reads lie between loads:
    interpolated with them, busy power came out 5-14% low (all of it idle on a slow Pi 5 PMIC). A sensor that
    answers nothing during the loops (``outage``) was filled in from the idle edge reads, reported as
    measured; it is null now, and said."""
    import time

    import edgeexit.profiling as profiling
    from edgeexit.energy.meter import PowerMeter
    from edgeexit.energy.reading import PowerReading

    busy_mw, idle_mw = 4000.0, 1000.0
    loading = [False]

    class LoadMeter(PowerMeter):
        name = source = "load"

        def read(self) -> PowerReading:
            t = self.clock()
            p = busy_mw if loading[0] else idle_mw
            time.sleep(0.0002)
            if outage and loading[0]:
                return PowerReading(t, {}, None, "input rail")
            return PowerReading(t, {"IN": p}, p, "input rail")

    loop = profiling._time_loop

    def loaded(*args, **kwargs):  # the load the meter sees: the segment's loop
        loading[0] = True
        try:
            return loop(*args, **kwargs)
        finally:
            loading[0] = False

    monkeypatch.setattr(profiling, "_time_loop", loaded)
    tree = _plain_tree(tmp_path, "jetson-nano")
    bundle = load_bundle(None)
    with open_board("jetson-nano", tree) as session:
        top = session.controller.cpu_opps_khz()[-2:]
        session.controller.cpu_opps_khz = lambda: top  # two points keep it short
        # the sampler as `edgeexit profile` makes it
        with Sampler(LoadMeter(), rate_hz=200.0, max_gap_s=SLOW_READ_GAP_CAP_S) as sampler, \
                Runtime(bundle, num_threads=1) as rt:
            data = profile_bundle(bundle, session, rt, threads=1, repeats=3, sampler=sampler, energy_window_s=0.05)
    if outage:
        assert data["busy_power_mw"] is None and data["segments"]["block0"]["energy_mj"] is None
        assert any("fewer than 3 good reads inside" in n for n in data["notes"]), data["notes"]
        return
    assert data["idle_power_mw"] == pytest.approx([idle_mw] * 2)
    assert data["busy_power_mw"] == pytest.approx([busy_mw] * 2, rel=0.01)
    for seg in data["segments"].values():
        assert seg["energy_mj"] == pytest.approx([busy_mw * ms / 1e3 for ms in seg["latency_ms"]], rel=0.01)


def test_the_sweep_goes_up_then_down():
    from edgeexit.profiling import _sweep

    assert _sweep(3, 3) == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0), (2, 0), (2, 1), (2, 2)]
    assert _sweep(2, 1) == [(0, 0), (0, 1)]


def test_a_hot_zone_is_recorded_and_named(tmp_path: Path):
    """A profile swept only ascending, with no temperature kept: the board heating through it could not be seen,
    and a zone at its trip (where the kernel throttles) went unsaid."""
    tree = _plain_tree(tmp_path, "jetson-nano")
    zone = tree / "sys/class/thermal/thermal_zone1"
    assert (zone / "type").read_text().strip() == "CPU-therm"
    assert int((zone / "trip_point_0_temp").read_text()) == 97000
    (zone / "temp").write_text("97500\n")
    pmic = tree / "sys/class/thermal/thermal_zone4"
    assert (pmic / "type").read_text().strip() == "PMIC-Die"
    (pmic / "temp").write_text("100000\n")  # what a Nano's PMIC zone always reads: it was every point's hottest
    bundle = load_bundle(None)
    with open_board("jetson-nano", tree) as session, Runtime(bundle, num_threads=1) as rt:
        data = profile_bundle(bundle, session, rt, threads=1, repeats=1, passes=1, settle_s=0.0,
                              energy_window_s=0.001)
    assert data["passes"] == 1 and data["pass_spread"] is None
    assert data["temperature_mc"] == [97500] * len(data["cpu_opps_khz"])
    assert any(n.startswith("thermal zone CPU-therm reached 97500 m°C, at or over its limit of 97000 m°C, at "
                            "{} kHz".format(FIRST_KHZ)) for n in data["notes"]), data["notes"]


def test_latency_that_moved_between_passes_is_named():
    from edgeexit.profiling import _sweep_notes

    notes = []
    _sweep_notes([102000, 204000], [0.02, 0.25], [], {}, notes)
    assert notes == ["the latency of all segments at 204000 kHz differed by 25.0% between passes (ascending, then "
                     "descending): something else ran, or the board throttled; profile again on an idle, cool board"]
    notes = []
    _sweep_notes([102000, 204000], [0.02, 0.05], [], {}, notes)
    assert notes == []


def test_a_pass_whose_clock_read_back_otherwise_is_left_out(tmp_path: Path):
    """A cap that moves between passes: the column mixed two clocks' invokes under the first pass's clock."""
    tree = _plain_tree(tmp_path, "jetson-nano")
    cur = tree / "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq"
    assert cur.read_text().strip() == str(FIRST_KHZ)  # a plain file: every request reads back as this
    bundle = load_bundle(None)
    ticks = []

    def tick(n: int) -> None:
        ticks.append(n)
        if sum(ticks) == len(data_opps) * 16:  # pass 1 done: from now on the clock reads back as 204000 kHz
            cur.write_text("204000\n")

    with open_board("jetson-nano", tree) as session, Runtime(bundle, num_threads=1) as rt:
        data_opps = session.controller.cpu_opps_khz()
        assert len(bundle.blocks) + len(bundle.exits) == 16
        data = profile_bundle(bundle, session, rt, threads=1, repeats=1, passes=2, settle_s=0.0,
                              energy_window_s=0.001, on_progress=tick)
    assert sum(ticks) == 2 * len(data_opps) * 16
    assert data["effective_cpu_khz"] == [FIRST_KHZ] * len(data_opps)
    assert data["pass_spread"] == [None] * len(data_opps)  # one pass measured each column
    assert any("in pass 1 and 204000 kHz in pass 2" in n and "those passes were left out there" in n
               for n in data["notes"]), data["notes"]


def _cpu_therm(tree: Path) -> Path:
    zone = tree / "sys/class/thermal/thermal_zone1"
    assert (zone / "type").read_text().strip() == "CPU-therm"
    return zone / "temp"


def test_each_pass_waits_for_the_board_to_cool(tmp_path: Path):
    """A board hot from earlier work profiled its first pass hot (throttled, leaky): --cool-below-c holds each pass
    at the lowest clock until the hottest zone has cooled, and the profile records what each pass began at."""
    tree = _plain_tree(tmp_path, "jetson-nano")
    temp = _cpu_therm(tree)
    temp.write_text("70000\n")
    setspeed = tree / "sys/devices/system/cpu/cpufreq/policy0/scaling_setspeed"
    waits = []

    def cooling(zone: str, temp_c: float) -> None:
        waits.append((zone, temp_c, int(setspeed.read_text())))
        threading.Timer(0.3, lambda: temp.write_text("44000\n")).start()  # the board cools while it waits

    bundle = load_bundle(None)
    with open_board("jetson-nano", tree) as session, Runtime(bundle, num_threads=1) as rt:
        data = profile_bundle(bundle, session, rt, threads=1, repeats=1, passes=2, settle_s=0.0, energy_window_s=0.001,
                              cool_below_c=45, cool_timeout_s=30, on_cooling=cooling, cool_poll_s=0.02)
    assert waits == [("CPU-therm", 70.0, FIRST_KHZ)]  # once: the second pass began cool
    rec = data["cooling"]
    assert rec["below_c"] == 45 and rec["pass_start_mc"] == [44000, 44000]
    assert rec["waited_s"][0] >= 0.25 and rec["waited_s"][1] < 0.25
    assert any(n.startswith("each pass began once the hottest thermal zone read at most 45 °C") for n in data["notes"])


def test_a_board_that_does_not_cool_fails_with_the_fix_and_is_restored(tmp_path: Path):
    tree = _plain_tree(tmp_path, "jetson-nano")
    _cpu_therm(tree).write_text("70000\n")
    governor = tree / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
    p = edgeexit("profile", "--board", "jetson-nano", "--sysfs-root", str(tree), "--meter", "none", "--repeats", "1",
                 "--cool-below-c", "45", "--cool-timeout-s", "0.2", "--out", str(tmp_path / "p.json"))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    # the wait's own status line, then the error naming the fix
    assert p.stderr.splitlines() == [
        "edgeexit: waiting at the lowest clock for thermal zone CPU-therm (70.0 °C) to cool to 45 °C",
        "edgeexit: error: thermal zone CPU-therm still reads 70.0 °C after 0.2 s at the lowest clock, above "
        "--cool-below-c 45; let the board cool or add cooling, or raise --cool-below-c or --cool-timeout-s"]
    assert governor.read_text().strip() == "schedutil"  # the wait pinned the lowest clock; the error restored it
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("args, needle", [
    (["--cool-below-c", "0"], "--cool-below-c"), (["--cool-below-c", "nan"], "--cool-below-c"),
    (["--cool-below-c", "200"], "--cool-below-c"), (["--cool-timeout-s", "-1"], "--cool-timeout-s"),
    (["--cool-timeout-s", "inf"], "--cool-timeout-s"),
])
def test_bad_cooling_arguments_are_refused(args, needle):
    assert_one_line_error(edgeexit("profile", "--board", "jetson-nano", "--simulate", *args), needle)


def test_cooling_on_a_simulated_board_is_ignored_with_a_word(tmp_path: Path):
    out = edgeexit("profile", "--board", "jetson-nano", "--simulate", "--cool-below-c", "45", "--json",
                   "--out", str(tmp_path / "p.json"))
    assert "--cool-below-c is ignored on a simulated board" in out.stderr
    assert json_out(out)["profile"]["cooling"] is None


def test_the_library_refuses_a_cooling_wait_it_cannot_keep(tmp_path: Path):
    from edgeexit.errors import ProfileError

    tree = _plain_tree(tmp_path, "jetson-nano")
    for z in (tree / "sys/class/thermal").iterdir():
        (z / "temp").unlink()  # no zone answers: a wait could never end
    bundle = load_bundle(None)
    with open_board("jetson-nano", tree) as session, Runtime(bundle, num_threads=1) as rt:
        with pytest.raises(ProfileError, match="--cool-below-c needs a thermal zone to read"):
            profile_bundle(bundle, session, rt, repeats=1, passes=1, cool_below_c=45)
        with pytest.raises(ProfileError, match="--cool-below-c must be a temperature"):
            profile_bundle(bundle, session, rt, repeats=1, passes=1, cool_below_c=float("nan"))
