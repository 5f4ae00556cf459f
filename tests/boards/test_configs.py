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
from edgeexit.paths import board_configs_dir

BOARDS = board_names()
REQUIRED = {"jetson-nano", "jetson-tx2", "jetson-xavier-nx", "jetson-orin-nano", "raspberry-pi-4", "raspberry-pi-5"}


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
    assert pm.idle_board_mw > 0 and pm.cpu_ceff_nf > 0 and 0 <= pm.mem_bound_fraction <= 1
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
    with pytest.raises(BoardDetectError, match="--board NAME"):
        detect_board(tmp_path)
    base = tmp_path / "sys/firmware/devicetree/base"
    base.mkdir(parents=True)
    (base / "model").write_bytes(b"Raspberry Pi 5 Model B Rev 1.1\0")
    assert detect_board(tmp_path).name == "raspberry-pi-5"
    (base / "model").write_bytes(b"Acme Toaster 3000\0")
    with pytest.raises(BoardDetectError, match="Acme Toaster 3000"):
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
