"""Board configs and firmware profiles: every shipped file loads, and bad files fail on one line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeexit.boards.config import board_names, load_board
from edgeexit.boards.detect import detect_board
from edgeexit.boards.profile import load_profile
from edgeexit.cli import cli
from edgeexit.errors import BoardConfigError, BoardDetectError
from edgeexit.paths import board_configs_dir, firmware_profiles_dir
from tests.cli.helpers import assert_one_line_error, edgeexit

BOARDS = board_names()
REQUIRED = {"jetson-nano", "jetson-tx2", "jetson-xavier-nx", "jetson-orin-nano", "jetson-agx-orin", "raspberry-pi-4",
            "raspberry-pi-5"}


def test_required_boards_ship() -> None:
    assert REQUIRED <= set(BOARDS)


@pytest.mark.parametrize("name", BOARDS)
def test_board_and_profile_load(name: str) -> None:
    board = load_board(name)
    profile = load_profile(board)
    for pol in board.cpu_policies:
        freqs = profile.cpu_table(pol.name).freqs
        assert freqs == sorted(freqs) and freqs[0] > 0
    assert (board.gpu is None) == (profile.gpu is None)
    assert board.power.sensor in ("ina3221-iio", "ina3221-hwmon", "pi5-pmic", "none")
    assert board.matches_model(board.device_tree_model)
    pm = profile.power_model
    assert pm.idle_board_mw > 0 and pm.cpu_ceff_pf > 0 and 0 <= pm.mem_bound_fraction <= 1
    assert pm.public_figures


def _copy_configs(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    shutil.copytree(str(board_configs_dir()), str(d))
    return d


@pytest.mark.parametrize("edit,needle", [
    (('devfreq_paths = ["sys/devices/gpu.0', 'devfreq_paths = ["/sys/devices/gpu.0'), "gpu.devfreq_paths"),
    (('devfreq_paths = ["sys/devices/gpu.0', 'devfreq_paths = ["../sys/devices/gpu.0'), "gpu.devfreq_paths"),
    (('kernel = "4.9"', 'kernel = "3.10"'), "'kernel'"),
    (('sensor = "ina3221-iio"', 'sensor = "ina9999"'), "power.sensor"),
    (('cpus = [0, 1, 2, 3]', 'cpus = [0, 1, 2]'), "cpu.policies"),
    (('input_rail = "POM_5V_IN"', 'input_rail = "VDD_NOPE"'), "power.input_rail"),
    (('device = "6-0040"', 'device = "6-40"'), "power.ina3221[0].device"),
    # a negative trip was accepted and later warned about a "-0.0 °C limit"
    (("trips_mc = [97000]", "trips_mc = [-5]"), "thermal.zones[0].trips_mc' must hold integers between 1 and 150000"),
    # a misspelt trip type or role, or a throttling trip above the critical one, were accepted (bad-input sweep)
    (('trip_types = ["passive", "critical"]', 'trip_types = ["pasive", "critical"]'),
     "thermal.zones[1].trip_types' holds 'pasive'; a kernel trip type is one of active, passive, hot, critical"),
    (('role = "cpu"', 'role = "cpus"'), "thermal.zones[1].role' is 'cpus'; use one of"),
    (("trips_mc = [97000, 102000]", "trips_mc = [102000, 97000]"),
     "thermal.zones[1].trips_mc' has a throttling trip above the critical one (97000 mC)"),
    # a node path that is a directory prefix of another: "Not a directory" with no fix, when the tree was built
    (('rate_path = "sys/kernel/debug/clk/override.emc/clk_rate"', 'rate_path = "sys/kernel"'),
     "emc.rate_path' is 'sys/kernel', a file (a sysfs node), yet emc.cap_path"),
    (('rate_path = "sys/kernel/debug/clk/override.emc/clk_rate"', 'rate_path = "sys/devices/system/cpu"'),
     "emc.rate_path' is 'sys/devices/system/cpu', a file (a sysfs node), yet (cpufreq policy0)"),
    (('cap_path = "sys/kernel/nvpmodel_emc_cap/emc_iso_cap"', 'cap_path = "sys/devices/gpu.0/devfreq/57000000.gpu"'),
     "emc.cap_path' is 'sys/devices/gpu.0/devfreq/57000000.gpu', a file (a sysfs node), yet gpu.devfreq_paths"),
])
def test_bad_config_fails_on_one_line_naming_file_and_key(tmp_path: Path, edit: tuple, needle: str) -> None:
    d = _copy_configs(tmp_path)
    f = d / "jetson-nano.toml"
    text = f.read_text()
    assert edit[0] in text
    f.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(BoardConfigError) as info:
        load_board("jetson-nano", d)
    msg = str(info.value)
    assert "\n" not in msg and "jetson-nano.toml" in msg and needle in msg


def _copy_profiles(tmp_path: Path) -> Path:
    d = tmp_path / "profiles"
    shutil.copytree(str(firmware_profiles_dir()), str(d))
    return d


@pytest.mark.parametrize("old,new,needle", [
    # nan/inf: ValueError tracebacks; 1e308: OverflowError; 0 macs_per_cycle or a 0 kHz point: ZeroDivisionError;
    # the negative or zero ones were accepted silently
    ("idle_board_mw = 1250.0", "idle_board_mw = nan", "power_model.idle_board_mw' must be a finite number (between 0"),
    ("cpu_ceff_pf = 400.0", "cpu_ceff_pf = inf", "power_model.cpu_ceff_pf' must be a finite number"),
    ("cpu_ceff_pf = 400.0", "cpu_ceff_pf = 1e7", "power_model.cpu_ceff_pf' must be between 0 and 1e+06"),
    # the old names of the pF keys: "missing cpu_ceff_pf", or kept silently as an extra key beside the new one
    ("cpu_ceff_pf = 400.0", "cpu_ceff_nf = 400.0",
     "power_model.cpu_ceff_nf' was renamed cpu_ceff_pf: the value is in picofarads (400 means 0.4 nF"),
    ("cpu_ceff_pf = 400.0", "cpu_ceff_pf = 400.0\ncpu_ceff_nf = 0.4", "power_model.cpu_ceff_nf' was renamed cpu_ceff_pf"),
    ("gpu_ceff_pf = 2200.0", "gpu_ceff_nf = 2200.0", "power_model.gpu_ceff_nf' was renamed gpu_ceff_pf"),
    ("idle_board_mw = 1250.0", "idle_board_mw = 1e308", "power_model.idle_board_mw' must be between 0 and 1e+06"),
    ("idle_board_mw = 1250.0", "idle_board_mw = -1.0", "power_model.idle_board_mw' must be between 0 and 1e+06"),
    ("cpu_int8_macs_per_cycle = 8.0", "cpu_int8_macs_per_cycle = 0.0",
     "power_model.cpu_int8_macs_per_cycle' must be > 0 and <= 1e+06"),
    ("invoke_overhead_us = 60.0", "invoke_overhead_us = -1.0", "power_model.invoke_overhead_us' must be between 0"),
    ("gpu_vmin_mv = 800.0", "gpu_vmin_mv = 0.0", "power_model.gpu_vmin_mv' must be > 0 and <= 5000"),
    ("gpu_vmin_mv = 800.0", "gpu_vmin_mv = 1200.0", "power_model.gpu_vmin_mv' (1200) must not exceed gpu_vmax_mv"),
    ("freq_khz = [102000,", "freq_khz = [0,", "cpu.opp_tables[0].freq_khz' must hold integers between 1 and"),
    ("voltage_mv = [742,", "voltage_mv = [0,", "cpu.opp_tables[0].voltage_mv' must hold integers between 1 and 5000"),
    # a reversed voltage list made the fastest point the cheapest; two modes of one id left one unreachable
    ("voltage_mv = [742, 742,", "voltage_mv = [1200, 742,", "cpu.opp_tables[0].voltage_mv' must not fall as freq_khz rises"),
    ("id = 1", "id = 0", "nvpmodel.modes' gives id 0 to two modes; give each mode its own id"),
    ("freq_hz = [76800000,", "freq_hz = [-1,", "gpu.freq_hz' must hold integers between 1 and"),
    ("cpu_max_khz = 918000", "cpu_max_khz = -5", "nvpmodel.modes[1].cpu_max_khz' must be between 1 and"),
    # a floor above the mode's cap: 4.9 refuses the pair, so the tree could not boot in that mode
    ("cpu_max_khz = 918000", "cpu_max_khz = 918000\ncpu_min_khz = 921600",
     "nvpmodel.modes[1].cpu_min_khz' (921600) must not exceed cpu_max_khz (918000)"),
    ("cpu_max_khz = 918000", "cpu_max_khz = 918000\ncpu_min_khz = 0", "nvpmodel.modes[1].cpu_min_khz' must be between 1"),
    ("budget_w = 5.0", "budget_w = nan", "nvpmodel.modes[1].budget_w' must be a finite number"),
    ("online_cpus = 2", "online_cpus = 9", "nvpmodel.modes[1].online_cpus' must be between 1 and 4"),
    ("transition_latency_ns = 300000", "transition_latency_ns = 10000000000000000000000",
     "cpu.transition_latency_ns' must be between 0 and 1e+10"),
    # a simulated rail's bus voltage: only a rail the board has, and within the INA3221's 26 V
    ("[power_model.public_figures]", "[power_model.rail_voltage_mv]\nVDD_NOPE = 800.0\n[power_model.public_figures]",
     "rail_voltage_mv.VDD_NOPE' is not an INA3221 rail of board jetson-nano (POM_5V_IN, POM_5V_GPU, POM_5V_CPU)"),
    ("[power_model.public_figures]", "[power_model.rail_voltage_mv]\nPOM_5V_IN = 0.0\n[power_model.public_figures]",
     "rail_voltage_mv.POM_5V_IN' must be > 0 and <= 26000"),
])
def test_firmware_profile_numbers_out_of_range_fail_on_one_line(tmp_path: Path, old: str, new: str, needle: str) -> None:
    d = _copy_profiles(tmp_path)
    f = d / "jetson-nano.toml"
    text = f.read_text()
    assert old in text
    f.write_text(text.replace(old, new, 1))
    with pytest.raises(BoardConfigError) as info:
        load_profile(load_board("jetson-nano"), d)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(f)) and needle in msg


def test_firmware_profile_range_errors_reach_the_cli_as_one_line(tmp_path: Path) -> None:
    d = _copy_profiles(tmp_path)
    f = d / "jetson-nano.toml"
    f.write_text(f.read_text().replace("cpu_int8_macs_per_cycle = 8.0", "cpu_int8_macs_per_cycle = 0.0", 1))
    p = edgeexit("run", "--board", "jetson-nano", "--simulate", "--limit", "2", env={"EDGEEXIT_FIRMWARE_PROFILES": str(d)})
    assert_one_line_error(p, "cpu_int8_macs_per_cycle", "> 0")


def test_old_ceff_nf_key_reaches_the_cli_as_one_line_naming_the_rename(tmp_path: Path) -> None:
    d = _copy_profiles(tmp_path)
    f = d / "jetson-nano.toml"
    text = f.read_text()
    assert "cpu_ceff_pf = 400.0" in text
    f.write_text(text.replace("cpu_ceff_pf = 400.0", "cpu_ceff_nf = 400.0", 1))
    p = edgeexit("run", "--board", "jetson-nano", "--simulate", "--limit", "2", env={"EDGEEXIT_FIRMWARE_PROFILES": str(d)})
    assert_one_line_error(p, str(f), "power_model.cpu_ceff_nf", "was renamed cpu_ceff_pf", "picofarads",
                          "400 means 0.4 nF", "rename the key")


def test_unknown_board_lists_known(tmp_path: Path) -> None:
    with pytest.raises(BoardConfigError, match="jetson-nano"):
        load_board("jetson-nope")


@pytest.mark.parametrize("name", BOARDS)
def test_detect_from_device_tree_model(tmp_path: Path, name: str) -> None:
    board = load_board(name)
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(board.device_tree_model.encode() + b"\0")
    assert detect_board(tmp_path).name == name


def test_detect_fallback_and_failures(tmp_path: Path) -> None:
    # off a board, --board NAME alone is refused next: the line names the simulator's way in too
    with pytest.raises(BoardDetectError, match="--board NAME.*sim init.*--simulate"):
        detect_board(tmp_path)
    base = tmp_path / "sys/firmware/devicetree/base"
    base.mkdir(parents=True)
    (base / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.1\0")
    assert detect_board(tmp_path).name == "raspberry-pi-5"
    # The Nano 2GB has no INA3221, so the Nano 4GB config must not claim it.
    (base / "model").write_bytes(b"NVIDIA Jetson Nano 2GB Developer Kit\0")
    with pytest.raises(BoardDetectError, match="2GB.*matches no board config"):
        detect_board(tmp_path)
    (base / "model").write_bytes(b"Acme Toaster 3000\0")
    with pytest.raises(BoardDetectError, match="Acme Toaster 3000"):
        detect_board(tmp_path)


def test_detect_by_compatible_where_the_model_is_unknown(tmp_path: Path) -> None:
    """JetPack 5 names the Orin Nano without "Jetson"; its compatible entries name the module. The carrier
    (p3768) is no evidence: it also carries Orin NX modules, which no config describes."""
    base = tmp_path / "sys/firmware/devicetree/base"
    base.mkdir(parents=True)
    (base / "model").write_bytes(b"NVIDIA Orin Nano Developer Kit\0")
    (base / "compatible").write_bytes(b"nvidia,p3768-0000+p3767-0005\0nvidia,tegra234\0")
    assert detect_board(tmp_path).name == "jetson-orin-nano"
    (base / "model").write_bytes(b"Unnamed carrier\0")
    assert detect_board(tmp_path).name == "jetson-orin-nano"  # the module's part number
    (base / "model").write_bytes(b"NVIDIA Orin NX Developer Kit\0")
    (base / "compatible").write_bytes(b"nvidia,p3768-0000+p3767-0000\0nvidia,tegra234\0")
    with pytest.raises(BoardDetectError, match=r"Orin NX.*\(compatible nvidia,p3768-0000\+p3767-0000, nvidia,tegra234\) "
                                               r"matches no board config"):
        detect_board(tmp_path)


def test_boards_cli_json_lists_every_board() -> None:
    result = CliRunner().invoke(cli, ["boards", "--json"])
    assert result.exit_code == 0, result.output
    names = [b["name"] for b in json.loads(result.output)["boards"]]
    assert names == BOARDS


def test_boards_cli_table_and_udev_rule() -> None:
    out = CliRunner().invoke(cli, ["boards"]).output
    for name in BOARDS:
        assert name in out
    rule = CliRunner().invoke(cli, ["boards", "--udev-rule"]).output
    assert 'SUBSYSTEM=="devfreq"' in rule and "chgrp edgeexit" in rule
    assert "usermod -aG video" in rule  # a Pi's vcgencmd (clock read-back, Pi 5 PMIC)
