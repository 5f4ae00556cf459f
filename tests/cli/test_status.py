"""`edgeexit status` on a Raspberry Pi shows the clock the firmware runs, not only cpufreq's request."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import edgeexit, json_out

CUR = "sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq"


@pytest.mark.parametrize("board,floor_khz", [("raspberry-pi-5", 1500000), ("raspberry-pi-4", 0), ("jetson-nano", None)])
def test_status_shows_the_firmware_clock_on_a_pi(tmp_path: Path, board: str, floor_khz: object) -> None:
    tree = tmp_path / board
    json_out(edgeexit("sim", "init", "--board", board, "--json", str(tree)))
    cur_khz = int((tree / CUR).read_text())
    st = json_out(edgeexit("status", "--board", board, "--sysfs-root", str(tree), "--json"))
    human = edgeexit("status", "--board", board, "--sysfs-root", str(tree))
    assert human.returncode == 0, human.stderr
    if floor_khz is None:  # cpufreq tells the truth: nothing to add
        assert "firmware_cpu_khz" not in st and "measure_clock" not in human.stdout
        return
    runs = max(cur_khz, int(floor_khz))  # type: ignore[call-overload]
    assert st["firmware_cpu_khz"] == runs
    assert "runs at {} kHz (vcgencmd measure_clock arm".format(runs) in human.stdout
    if board == "raspberry-pi-5":
        assert cur_khz < runs  # the idle governor asks for 1.0 GHz; the firmware runs 1.5


def test_status_says_which_policies_are_offline(tmp_path: Path) -> None:
    """The TX2 boots its default power mode with the Denver cores (policy1) offline; runs leave that policy
    alone, and status says so rather than showing it like any other."""
    tree = tmp_path / "tx2"
    json_out(edgeexit("sim", "init", "--board", "jetson-tx2", "--json", str(tree)))
    st = json_out(edgeexit("status", "--board", "jetson-tx2", "--sysfs-root", str(tree), "--json"))
    assert {d["name"]: d["online"] for d in st["domains"] if d["kind"] == "cpu"} == {"policy0": True, "policy1": False}
    human = edgeexit("status", "--board", "jetson-tx2", "--sysfs-root", str(tree)).stdout
    assert [line for line in human.splitlines() if "CPUs offline" in line] == [
        next(line for line in human.splitlines() if "policy1" in line)]


def test_status_finds_thermal_zones_by_type(tmp_path: Path) -> None:
    """Zones renumbered from what the config assumes are shown under their own names; one missing is said to be."""
    import shutil

    tree = tmp_path / "nano"
    json_out(edgeexit("sim", "init", "--board", "jetson-nano", "--json", str(tree)))
    shutil.rmtree(str(tree / ".edgeexit-sim"))  # read as a real board's files
    zones = tree / "sys/class/thermal"
    (zones / "thermal_zone1").rename(zones / "swap")
    (zones / "thermal_zone2").rename(zones / "thermal_zone1")
    (zones / "swap").rename(zones / "thermal_zone2")
    (zones / "thermal_zone2/temp").write_text("61000\n")  # CPU-therm's, now zone 2
    (zones / "thermal_zone1/temp").write_text("42000\n")
    shutil.rmtree(str(zones / "thermal_zone3"))
    st = json_out(edgeexit("status", "--board", "jetson-nano", "--sysfs-root", str(tree), "--json"))
    got = {t["type"]: (t["zone"], t["temp_mc"], t["error"]) for t in st["thermal"]}
    assert got["CPU-therm"] == (2, 61000, None) and got["GPU-therm"] == (1, 42000, None)
    assert got["PLL-therm"] == (None, None, "absent")
    human = edgeexit("status", "--board", "jetson-nano", "--sysfs-root", str(tree)).stdout
    assert "CPU-therm        61.0 C" in human and "PLL-therm        absent (no thermal zone has this type)" in human
