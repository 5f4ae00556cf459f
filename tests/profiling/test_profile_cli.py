"""`edgeexit profile` on simulated boards end to end, and the profile it writes as `edgeexit run` reads it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeexit.boards.config import load_board
from edgeexit.boards.profile import load_profile
from edgeexit.bundle import load_bundle
from edgeexit.costmodel import PROFILE_SCHEMA, PhysicsCostModel, load_profile_json
from edgeexit.paths import demo_bundle_dir
from edgeexit.sim.physics import BoardPhysics
from tests.cli.helpers import assert_one_line_error, edgeexit, json_out

THREADS = 4


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> dict:
    out = {}
    for board in ("jetson-nano", "raspberry-pi-5"):
        path = tmp_path_factory.mktemp(board) / "profile.json"
        out[board] = json_out(edgeexit("profile", "--board", board, "--simulate", "--threads", str(THREADS),
                                       "--out", str(path), "--json"))
    return out


@pytest.mark.parametrize("board", ["jetson-nano", "raspberry-pi-5"])
def test_simulated_profile_completes_and_loads(profiles, board: str):
    out = profiles[board]
    assert out["simulated"] is True and out["restored"] is True and "SIMULATED" in out["board_description"]
    path = Path(out["profile_path"])
    data = json.loads(path.read_text())
    assert data == out["profile"]
    assert data["schema"] == PROFILE_SCHEMA and data["board"] == board and data["simulated"] is True
    assert data["latency_source"] == "simulated" and data["energy_source"] == "simulated"
    assert data["threads"] == THREADS
    bundle = load_bundle(None)
    physics = BoardPhysics(load_profile(load_board(board)), threads=THREADS)
    assert data["cpu_opps_khz"] == physics.freqs_khz
    labels = [s.label for s in bundle.blocks + bundle.exits]
    assert sorted(data["segments"]) == sorted(labels)
    for seg in data["segments"].values():
        assert len(seg["latency_ms"]) == len(seg["energy_mj"]) == len(data["cpu_opps_khz"])
    cost = load_profile_json(path, bundle, board)  # what `edgeexit run --profile` calls
    model = PhysicsCostModel(physics, bundle)
    for f in data["cpu_opps_khz"]:
        for label in labels:
            assert cost.segment_ms(label, f) == pytest.approx(model.segment_ms(label, f), rel=1e-6)
        assert cost.busy_mw(f) == pytest.approx(model.busy_mw(f), rel=1e-6)
        assert cost.idle_mw(f) == pytest.approx(model.idle_mw(f), rel=1e-6)
    assert cost.transition_ms == pytest.approx(physics.transition_s * 1e3)
    assert any("GPU DVFS not exercised" in n or "no GPU devfreq" in n for n in data["notes"])


def test_latency_rises_as_frequency_falls_in_profile(profiles):
    data = profiles["jetson-nano"]["profile"]
    lat = data["segments"]["block5"]["latency_ms"]
    assert all(a > b for a, b in zip(lat, lat[1:]))  # table ascending, so latency strictly falls


def test_pi5_profile_shows_the_firmware_floor(profiles):
    data = profiles["raspberry-pi-5"]["profile"]
    opps = data["cpu_opps_khz"]
    lat = data["segments"]["block5"]["latency_ms"]
    below = [lat[i] for i, f in enumerate(opps) if f <= 1500000]
    assert len(set(below)) == 1 and lat[-1] < below[0]
    assert data["effective_cpu_khz"] == [max(f, 1500000) for f in opps]  # read back from the firmware
    assert any("ran at 1500000 kHz (read back from vcgencmd measure_clock arm)" in n for n in data["notes"])


def test_pi5_planning_from_its_profile_skips_the_requests_below_the_floor(profiles):
    """The profile records the clock each request ran at; the planner plans only operating points that run
    as asked, as with the board model, so a planned run never pins 1.0 GHz to get the firmware's 1.5."""
    bundle = load_bundle(None)
    path = Path(profiles["raspberry-pi-5"]["profile_path"])
    cost = load_profile_json(path, bundle, "raspberry-pi-5")
    physics = BoardPhysics(load_profile(load_board("raspberry-pi-5")), threads=THREADS)
    assert cost.cpu_opps_khz == PhysicsCostModel(physics, bundle).cpu_opps_khz == [
        f for f in physics.freqs_khz if f >= 1500000]
    assert cost.segment_ms("block0", 1000000) == cost.segment_ms("block0", 1500000)  # its column is still read
    p = edgeexit("run", "--board", "raspberry-pi-5", "--simulate", "--profile", str(path), "--policy", "predictive",
                 "--deadline-ms", "4", "--period-ms", "10", "--limit", "20", "--threads", str(THREADS), "--json")
    assert p.returncode == 0, p.stderr
    assert "did not follow" not in p.stderr and json.loads(p.stdout)["cost_model"].startswith("profile ")


def test_profile_predicts_what_run_reports(profiles, tmp_path: Path):
    """The profile's columns at a pinned OPP add up to the simulated run's latency and energy."""
    data = profiles["jetson-nano"]["profile"]
    f = 710400
    rec_path = tmp_path / "rec.jsonl"
    json_out(edgeexit("run", "--board", "jetson-nano", "--simulate", "--cpu-khz", str(f), "--threads", str(THREADS),
                      "--policy", "full", "--limit", "1", "--output", str(rec_path), "--json"))
    rec = json.loads(rec_path.read_text().splitlines()[0])
    col = data["cpu_opps_khz"].index(f)
    ran = list(rec["host_segments_ms"])
    assert rec["latency_ms"] == pytest.approx(sum(data["segments"][l]["latency_ms"][col] for l in ran), abs=1e-5)
    assert rec["energy_mj"] == pytest.approx(sum(data["segments"][l]["energy_mj"][col] for l in ran), abs=1e-5)


def test_human_output_says_simulated_and_default_path(tmp_path: Path):
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(bundle_dir))
    p = edgeexit("profile", "--board", "jetson-nano", "--simulate", "--model", str(bundle_dir))
    assert p.returncode == 0, p.stderr
    assert "SIMULATED" in p.stdout and "SIMULATED" in p.stderr
    written = bundle_dir / "profiles" / "jetson-nano-simulated.json"
    assert written.is_file() and str(written) in p.stdout
    assert "board clocks restored" in p.stdout
    load_profile_json(written, load_bundle(bundle_dir), "jetson-nano")


def test_bad_input_is_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(edgeexit("profile", "--board", "jetson-nano", "--simulate", "--out", str(blocker / "p.json")),
                          "cannot write the profile", "--out")
    assert_one_line_error(edgeexit("profile", "--board", "no-such-board", "--simulate"), "no-such-board")
    assert_one_line_error(edgeexit("profile", "--simulate"), "--board")
    assert_one_line_error(edgeexit("profile", "--board", "jetson-nano", "--simulate", "--repeats", "0"), "--repeats")


def test_unusable_profile_for_run_is_one_line(profiles, tmp_path: Path):
    # the runs below use 1 thread: each case is then refused for its own defect, not for the thread count
    good = dict(json.loads(Path(profiles["jetson-nano"]["profile_path"]).read_text()), threads=1)
    cases = {
        "missing.json": None,
        "torn.json": '{"schema": "' + PROFILE_SCHEMA + '", ',
        "other.json": json.dumps({"x": 1}),
        "noboard.json": json.dumps({k: v for k, v in good.items() if k != "board"}),
        "pi5.json": json.dumps(dict(good, board="raspberry-pi-5")),
        # a broken table used to end in a traceback (IndexError) or "no column for None kHz"
        "noopps.json": json.dumps(dict(good, cpu_opps_khz=[])),
        "textlatency.json": json.dumps(dict(good, segments=dict(good["segments"], block0=dict(
            good["segments"]["block0"], latency_ms=["x"] * len(good["cpu_opps_khz"]))))),
        "shortpower.json": json.dumps(dict(good, busy_power_mw=[1000.0])),
        "shorteffective.json": json.dumps(dict(good, effective_cpu_khz=[1000])),
        "capped.json": json.dumps(dict(good, effective_cpu_khz=[999] * len(good["cpu_opps_khz"]))),
    }
    needles = {"missing.json": "does not exist; check the path", "torn.json": "cannot read profile",
               "other.json": "not an edgeexit profile", "noboard.json": "names no board",
               "pi5.json": "measured on raspberry-pi-5 but this run is on jetson-nano",
               "noopps.json": "cpu_opps_khz must be a non-empty list",
               "textlatency.json": "block0 latency_ms needs", "shortpower.json": "busy_power_mw needs",
               "shorteffective.json": "effective_cpu_khz needs", "capped.json": "no operating point ran at the clock"}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        p = edgeexit("run", "--board", "jetson-nano", "--simulate", "--policy", "predictive", "--deadline-ms", "4",
                     "--profile", str(path), "--limit", "2")
        assert_one_line_error(p, needles[name], "edgeexit profile" if name != "pi5.json" else "profile this board")
    p = edgeexit("calibrate", "--eenet-budget-ms", "0.5", "--latency-profile", str(tmp_path / "textlatency.json"))
    assert_one_line_error(p, "block0 latency_ms needs", "edgeexit profile")


def test_profile_plot(tmp_path: Path):
    png = tmp_path / "plots" / "pi5.png"
    out = json_out(edgeexit("profile", "--board", "raspberry-pi-5", "--simulate", "--out", str(tmp_path / "p.json"),
                            "--plot", str(png), "--json"))
    assert out["plot_path"] == str(png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = edgeexit("profile", "--board", "jetson-nano", "--simulate", "--out", str(tmp_path / "q.json"),
                 "--plot", str(blocker / "x.png"))
    assert_one_line_error(p, "cannot write the plot", "--plot FILE")
    assert not (tmp_path / "q.json").exists()  # refused before profiling


@pytest.mark.parametrize("plot,needles", [
    ("x.txt", ("does not end in .png", "FILE.png")),  # matplotlib would have raised after profiling
    ("noext", ("does not end in .png",)),  # matplotlib would have written noext.png and we'd have said noext
    ("/proc/x.png", ("cannot write the plot", "--plot FILE")),  # root passes os.access, yet cannot create it
])
def test_profile_plot_path_is_refused_before_profiling(tmp_path: Path, plot: str, needles):
    out = tmp_path / "q.json"
    p = edgeexit("profile", "--board", "jetson-nano", "--simulate", "--out", str(out), "--plot",
                 plot if plot.startswith("/") else str(tmp_path / plot))
    assert_one_line_error(p, *needles)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_profile_plot_without_energy(tmp_path: Path, profiles):
    """A real board without a meter profiles latency only: the plot says energy was not measured."""
    from edgeexit.profile_plot import energy_gap, plot_profile
    from edgeexit.profiling import inference_table

    data = dict(profiles["jetson-nano"]["profile"], energy_source=None, busy_power_mw=None, idle_power_mw=None)
    data["segments"] = {k: dict(v, energy_mj=None) for k, v in data["segments"].items()}
    rows = inference_table(data, list(data["segments"]))
    assert all(r["energy_mj"] is None for r in rows)
    assert plot_profile(data, rows, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert energy_gap(data, [r["energy_mj"] for r in rows]) == "energy not measured (no power meter)"


def test_a_full_disk_leaves_the_old_plot_whole(tmp_path: Path, profiles, monkeypatch):
    """matplotlib wrote --plot in place: a full disk after minutes of profiling left a truncated PNG and a bare
    OSError. Now the old plot stays and the error names the file and --plot."""
    import errno
    import os

    from edgeexit.errors import OutputError
    from edgeexit.profile_plot import plot_profile
    from edgeexit.profiling import inference_table

    data = profiles["jetson-nano"]["profile"]
    old = tmp_path / "p.png"
    old.write_bytes(b"old plot")

    def full(fd):  # the bytes written, then ENOSPC when they must reach the disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError) as err:
        plot_profile(data, inference_table(data, list(data["segments"])), old)
    assert "p.png" in str(err.value) and "No space left" in str(err.value) and "--plot FILE.png" in str(err.value)
    assert old.read_bytes() == b"old plot" and list(tmp_path.iterdir()) == [old]


def test_the_plot_marks_no_request_that_ran_at_another_clock(profiles):
    """The Pi 5 profile plot starred 1000 MHz as the least energy: a request its firmware ran at 1.5 GHz,
    tied with it, which the planner never picks."""
    from edgeexit.profile_plot import least_energy_point, ran_elsewhere
    from edgeexit.profiling import inference_table

    data = profiles["raspberry-pi-5"]["profile"]
    energy = [r["energy_mj"] for r in inference_table(data, list(data["segments"]))]
    best = least_energy_point(data, energy)
    assert ran_elsewhere(data) and best is not None and best not in ran_elsewhere(data)
    assert data["cpu_opps_khz"][best] >= 1500000


def test_profile_plot_with_a_meter_that_missed_windows(tmp_path: Path, profiles):
    """A meter ran but gave no valid samples at one clock: the plot draws the clocks it measured and says
    why one is missing, instead of "no power meter"."""
    from edgeexit.profile_plot import energy_gap, plot_profile
    from edgeexit.profiling import inference_table

    data = dict(profiles["jetson-nano"]["profile"], energy_source="ina3221 VDD_IN")
    first = next(iter(data["segments"]))
    seg = data["segments"][first]
    data["segments"] = dict(data["segments"], **{first: dict(seg, energy_mj=[None] + list(seg["energy_mj"][1:]))})
    rows = inference_table(data, list(data["segments"]))
    energy = [r["energy_mj"] for r in rows]
    assert energy[0] is None and all(e is not None for e in energy[1:])
    assert energy_gap(data, energy).startswith("energy unknown at 1 of {} clocks".format(len(energy)))
    assert plot_profile(data, rows, tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_profile_serves_only_runs_with_its_thread_count(tmp_path: Path):
    """After the README's `profile --threads 4`, a 1-thread planned run planned from 4-thread latencies, too
    fast, and missed 1.5% of its deadlines. Profiles are now one file per thread count, and one measured with
    another count is refused."""
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(bundle_dir))
    four = json_out(edgeexit("profile", "--board", "jetson-nano", "--simulate", "--model", str(bundle_dir), "--threads", "4",
                             "--json"))
    assert Path(four["profile_path"]).name == "jetson-nano-simulated-4threads.json"
    run = ("run", "--board", "jetson-nano", "--simulate", "--model", str(bundle_dir), "--policy", "predictive",
           "--deadline-ms", "3.89", "--period-ms", "3.89", "--limit", "200", "--json")
    p = edgeexit(*run)
    one = json_out(p)
    assert one["cost_model"].startswith("board model") and one["deadline_miss_rate"] == 0.0
    # said, not silent: the README's 1-thread bench after it planned from the board model without a word
    assert "planning from the board model" in p.stderr and "pass --threads 4" in p.stderr, p.stderr
    # the command it names runs as printed (a bare `edgeexit profile --threads 1` cannot find the board)
    assert "`edgeexit profile --board jetson-nano --simulate --model {} --threads 1`".format(bundle_dir) in p.stderr, p.stderr
    # a run that plans nothing (a simulated board's governor emulated, threshold) has nothing to hear
    quiet = edgeexit("run", "--board", "jetson-nano", "--simulate", "--model", str(bundle_dir), "--limit", "3")
    assert quiet.returncode == 0 and "planning from the board model" not in quiet.stderr, quiet.stderr
    # bench says it before its calibration: its first arm (race) plans nothing either
    from edgeexit.bench.core import check_default_profile
    from edgeexit.boards.config import load_board
    from edgeexit.boards.profile import load_profile
    from edgeexit.bundle import load_bundle
    from edgeexit.sim.physics import BoardPhysics

    said = []
    physics = BoardPhysics(load_profile(load_board("jetson-nano")))
    check_default_profile(load_bundle(bundle_dir), "jetson-nano", True, 1, physics, said.append)
    assert len(said) == 1 and "pass --threads 4" in said[0]
    assert json_out(edgeexit(*run, "--threads", "4"))["cost_model"].startswith("profile")
    assert_one_line_error(edgeexit(*run, "--profile", four["profile_path"]), "measured with 4 interpreter thread(s)",
                          "this run uses 1", "`edgeexit profile --board jetson-nano --simulate --model {} --threads 1 --out {}`"
                          .format(bundle_dir, four["profile_path"]))
    # a mistyped path is named as such: profiling again would not fix it
    missing = str(tmp_path / "typo.json")
    assert_one_line_error(edgeexit(*run, "--profile", missing), "does not exist", "check the path")


def test_the_profile_plots_latency_from_zero(tmp_path: Path, profiles, monkeypatch):
    """Reader review: the Pi 5's latency moves 7% over its clocks, and an axis from 0.32 ms drew it as a steep fall."""
    import matplotlib.pyplot as plt

    import edgeexit.profile_plot as profile_plot
    from edgeexit.profiling import inference_table

    figs = []
    monkeypatch.setattr(profile_plot, "save_figure", lambda plt_, fig, path, fix: figs.append(fig))
    data = profiles["raspberry-pi-5"]["profile"]
    rows = inference_table(data, list(data["segments"]))
    profile_plot.plot_profile(data, rows, tmp_path / "p.png")
    top = figs[0].axes[0]
    assert top.get_ylim()[0] == 0 and top.get_ylim()[1] >= max(r["latency_ms"] for r in rows)
    plt.close("all")
