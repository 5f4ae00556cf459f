"""`edgeexit status` shows the board's power rails and total through the real meters (simulated trees too)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import edgeexit, json_out


def _tree(tmp_path: Path, board: str) -> Path:
    tree = tmp_path / board
    json_out(edgeexit("sim", "init", "--board", board, "--json", str(tree)))
    return tree


def test_nano_status_after_run_shows_the_idle_board_again(tmp_path: Path):
    # The run's load shows on the sensors while it runs (test_sensors_after_run.py); once it has restored
    # the board, status reads the idle board at the restored clock, as before the run.
    tree = _tree(tmp_path, "jetson-nano")
    before = json_out(edgeexit("status", "--board", "jetson-nano", "--sysfs-root", str(tree), "--json"))["power"]
    s = json_out(edgeexit("run", "--board", "jetson-nano", "--sysfs-root", str(tree), "--cpu-khz", "max",
                          "--threads", "4", "--policy", "full", "--limit", "2", "--json"))
    st = json_out(edgeexit("status", "--board", "jetson-nano", "--sysfs-root", str(tree), "--json"))
    p = st["power"]
    assert p["available"] is True and p["meter"].startswith("ina3221")
    assert set(p["rails_mw"]) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}
    assert p["rails_mw"] == before["rails_mw"] and p["total_mw"] == before["total_mw"]
    assert 0 < p["total_mw"] < s["mean_energy_mj"] / s["mean_latency_ms"] * 1000.0  # idle, below the run's power
    assert "POM_5V_IN" in p["total_basis"]
    human = edgeexit("status", "--board", "jetson-nano", "--sysfs-root", str(tree))
    assert human.returncode == 0, human.stderr
    assert "rail POM_5V_CPU" in human.stdout and "power total" in human.stdout and "SIMULATED" in human.stdout


def test_pi5_status_reads_the_pmic_text(tmp_path: Path):
    tree = _tree(tmp_path, "raspberry-pi-5")
    json_out(edgeexit("run", "--board", "raspberry-pi-5", "--sysfs-root", str(tree), "--threads", "4",
                      "--policy", "full", "--limit", "1", "--json"))
    p = json_out(edgeexit("status", "--board", "raspberry-pi-5", "--sysfs-root", str(tree), "--json"))["power"]
    assert p["available"] is True and p["meter"] == "pi5-pmic"
    assert p["rails_mw"]["VDD_CORE"] > 0 and p["total_mw"] == pytest.approx(sum(p["rails_mw"].values()))
    assert "no input current sensor" in p["total_basis"]


def test_pi4_status_says_no_power_sensor(tmp_path: Path):
    tree = _tree(tmp_path, "raspberry-pi-4")
    st = json_out(edgeexit("status", "--board", "raspberry-pi-4", "--sysfs-root", str(tree), "--json"))
    assert st["power"]["available"] is False and st["power"]["reason"].startswith("no power sensor: ")
    human = edgeexit("status", "--board", "raspberry-pi-4", "--sysfs-root", str(tree))
    assert human.returncode == 0, human.stderr
    assert "power: no power sensor:" in human.stdout and "Joulescope" in human.stdout


def test_missing_sensor_files_degrade_to_one_line(tmp_path: Path):
    import shutil

    tree = _tree(tmp_path, "jetson-nano")
    shutil.rmtree(str(tree / "sys/bus/i2c/drivers/ina3221x"))
    human = edgeexit("status", "--board", "jetson-nano", "--sysfs-root", str(tree))
    assert human.returncode == 0, human.stderr
    lines = [l for l in human.stdout.splitlines() if "power" in l]
    assert len(lines) == 1 and "no power sensor" in lines[0], human.stdout
