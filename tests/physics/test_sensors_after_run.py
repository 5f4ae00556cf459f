"""During a run on a simulated tree, the real meter backends read the modelled power; after it, the
idle board again.

The simulated board publishes its modelled rail powers into the tree in the board's real sensor
layout (INA3221 IIO or hwmon files, or the Pi 5's `vcgencmd pmic_read_adc` text); these tests read
them back through the same meters a real board uses and compare with the board model.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Tuple

import pytest

from edgeexit.boards.config import load_board
from edgeexit.bundle import load_bundle
from edgeexit.dvfs import open_board
from edgeexit.boards.profile import load_profile
from edgeexit.dvfs.session import resolve_target
from edgeexit.energy.ina3221 import Ina3221Meter
from edgeexit.energy.reading import PowerReading
from edgeexit.energy.pi5_pmic import Pi5PmicMeter
from edgeexit.execute import execute
from edgeexit.policies import make_policy
from edgeexit.profiling import board_meter
from edgeexit.runtime import Runtime
from edgeexit.sim.physics import BoardPhysics
from tests.cli.helpers import edgeexit, json_out

THREADS = 4
# in_power (IIO) is an integer mW; hwmon gives integer mV and mA, so V*I at 5 V is within 2.5 mW.
TOLERANCE_MW = {"ina3221-iio": 1.0, "ina3221-hwmon": 2.5}


PMIC_TEXT = ".edgeexit-sim/vcgencmd/pmic_read_adc"


def _run_on_tree(board: str, tree: Path, cpu_khz: int) -> Tuple[dict, PowerReading, str]:
    """Three inferences of `full` pinned at ``cpu_khz``; returns the summary, what the board's meter
    reads while the session holds the board, and the Pi 5 PMIC text then ("" on other boards). Once the
    session has restored the board, the meter must read what it read on the fresh tree: the idle board
    at the restored clock."""
    json_out(edgeexit("sim", "init", "--board", board, "--json", str(tree)))
    fresh = board_meter(resolve_target(board, tree)).read()
    bundle = load_bundle()
    with Runtime(bundle, num_threads=THREADS) as rt, open_board(board, sysfs_root=tree) as session:
        floor = int(session.profile.power_model.extra.get("real_min_cpu_khz", 0))
        assert session.controller.set_cpu_khz(cpu_khz) == max(cpu_khz, floor)  # the Pi 5 firmware floors it
        ex = execute(bundle, rt, make_policy("full", bundle), bundle.split("evaluation").take(3), session=session,
                     threads=THREADS)
        during = board_meter(resolve_target(board, tree)).read()
        pmic_text = (tree / PMIC_TEXT).read_text() if (tree / PMIC_TEXT).is_file() else ""
    assert ex.summary["simulated"] is True
    after = board_meter(resolve_target(board, tree)).read()
    assert after.rails_mw == fresh.rails_mw and after.total_mw == fresh.total_mw
    assert during.total_mw > fresh.total_mw  # the run's load showed while it ran
    return ex.summary, during, pmic_text


def _mean_power_mw(summary: dict) -> float:
    # policy full: every inference is the same, so the last one published equals the mean (mJ/ms = W)
    return summary["mean_energy_mj"] / summary["mean_latency_ms"] * 1000.0


@pytest.mark.parametrize("board,cpu_khz", [
    ("jetson-nano", 1479000), ("jetson-nano", 710400), ("jetson-tx2", 1190400),
    ("jetson-xavier-nx", 1190400), ("jetson-orin-nano", 1190400),
    ("jetson-agx-orin", 1190400),  # no input rail: the total is the sum less the rail VIN_SYS_5V0 feeds
])
def test_ina3221_reads_the_modelled_power(tmp_path: Path, board: str, cpu_khz: int):
    cfg = load_board(board)
    physics = BoardPhysics(load_profile(cfg), threads=THREADS)
    if cpu_khz not in physics.freqs_khz:
        cpu_khz = physics.freqs_khz[len(physics.freqs_khz) // 2]
    s, r, _ = _run_on_tree(board, tmp_path / "tree", cpu_khz)
    assert isinstance(board_meter(resolve_target(board, tmp_path / "tree")), Ina3221Meter)
    tol = TOLERANCE_MW[cfg.power.sensor]
    avg = _mean_power_mw(s)
    assert r.total_mw == pytest.approx(avg, abs=tol * max(1, len(r.rails_mw)))
    busy = physics.power(cpu_khz, True)
    p = cfg.power
    cpu_expected = busy.cpu_mw + (busy.gpu_mw if p.gpu_rail == p.cpu_rail else 0.0)
    assert r.rails_mw[p.cpu_rail] == pytest.approx(cpu_expected, abs=tol)
    if p.input_rail:
        assert r.rails_mw[p.input_rail] == pytest.approx(avg, abs=tol)
    if p.gpu_rail and p.gpu_rail != p.cpu_rail and p.gpu_rail in r.rails_mw:
        assert r.rails_mw[p.gpu_rail] == pytest.approx(busy.gpu_mw, abs=tol)


@pytest.mark.parametrize("cpu_khz", [2400000, 1800000, 1000000])
def test_pi5_pmic_reads_the_modelled_power(tmp_path: Path, cpu_khz: int):
    board = "raspberry-pi-5"
    physics = BoardPhysics(load_profile(load_board(board)), threads=THREADS)
    s, r, text = _run_on_tree(board, tmp_path / "tree", cpu_khz)
    # the meter reads .edgeexit-sim/vcgencmd/pmic_read_adc instead of running vcgencmd
    assert isinstance(board_meter(resolve_target(board, tmp_path / "tree")), Pi5PmicMeter)
    cpu = physics.power(cpu_khz, True).cpu_mw
    avg = _mean_power_mw(s)
    # VDD_CORE carries the CPU; the other PMIC rails carry 80% of the rest (the input losses and 5 V
    # loads are on no PMIC rail), so the PMIC sum is below the modelled board power, as on a real Pi 5.
    assert r.rails_mw["VDD_CORE"] == pytest.approx(cpu, abs=0.01)
    assert r.total_mw == pytest.approx(cpu + 0.8 * (avg - cpu), abs=0.05)
    # ... at the core voltage of the operating point that ran (it used to be f_max's, whatever ran)
    core_v = float(re.search(r"VDD_CORE_V volt\(\d+\)=([0-9.]+)V", text).group(1))
    assert core_v * 1000.0 == pytest.approx(physics.opp(cpu_khz).voltage_mv, abs=0.01)
    assert r.total_mw < avg
    assert r.input_voltage_mv == pytest.approx(5100.0)


def test_pi4_has_no_sensor_to_read(tmp_path: Path):
    from edgeexit.errors import SensorMissingError

    json_out(edgeexit("sim", "init", "--board", "raspberry-pi-4", "--json", str(tmp_path / "tree")))
    with pytest.raises(SensorMissingError, match="no on-board power sensor"):
        board_meter(resolve_target("raspberry-pi-4", tmp_path / "tree"))


@pytest.mark.parametrize("board", ["jetson-nano", "jetson-tx2", "jetson-xavier-nx", "jetson-orin-nano", "jetson-agx-orin",
                                   "raspberry-pi-5"])
def test_fresh_tree_shows_the_modelled_idle_board(tmp_path: Path, board: str):
    # Before any run, the sensors read the idle board the model holds at the starting clock (they used
    # to show the board floor alone on the input rail and 0 mW on the CPU and GPU rails).
    from edgeexit.sim.tree import initial_state

    cfg = load_board(board)
    profile = load_profile(cfg)
    json_out(edgeexit("sim", "init", "--board", board, "--json", str(tmp_path / "tree")))
    start_khz = initial_state(cfg, profile)["cpufreq"][cfg.cpu_policies[0].name]["cur"]
    idle = BoardPhysics(profile).power(start_khz, False)
    r = board_meter(resolve_target(board, tmp_path / "tree")).read()
    p = cfg.power
    if p.sensor == "pi5-pmic":
        assert r.rails_mw["VDD_CORE"] == pytest.approx(idle.cpu_mw, abs=0.01)
        assert r.total_mw == pytest.approx(idle.cpu_mw + 0.8 * (idle.total_mw - idle.cpu_mw), abs=0.05)
        return
    tol = TOLERANCE_MW[p.sensor]
    assert r.rails_mw[p.cpu_rail] == pytest.approx(idle.cpu_mw + (idle.gpu_mw if p.gpu_rail == p.cpu_rail else 0.0), abs=tol)
    assert r.rails_mw[p.cpu_rail] > 0
    if p.input_rail:
        assert r.rails_mw[p.input_rail] == pytest.approx(idle.total_mw, abs=tol)
    else:
        assert r.total_mw == pytest.approx(idle.total_mw, abs=tol * len(p.summed_rails()))
