"""meter_for_board: the board's [power] table chooses the backend, explicitly."""
from __future__ import annotations

from pathlib import Path

import pytest
from energy_fixtures import (
    AGX_ORIN_POWER,
    NANO_POWER,
    ORIN_NANO_POWER,
    PI4_POWER,
    PI5_POWER,
    FakeJoulescopeDriver,
    make_agx_orin,
    make_nano,
    make_orin_nano,
)

from edgeexit.energy import Ina3221Meter, Pi5PmicMeter, Sampler, meter_for_board
from edgeexit.energy.factory import NoMeter
from edgeexit.energy.joulescope import JoulescopeMeter
from edgeexit.errors import BoardConfigError, SensorMissingError


def test_auto_follows_the_sensor_field(tmp_path: Path, pmic_text: str, clock) -> None:
    make_nano(tmp_path / "nano")
    make_orin_nano(tmp_path / "orin")
    make_agx_orin(tmp_path / "agx")
    nano = meter_for_board(NANO_POWER, tmp_path / "nano", clock=clock)
    assert isinstance(nano, Ina3221Meter) and nano.name == "ina3221-iio"
    orin = meter_for_board(ORIN_NANO_POWER, tmp_path / "orin", clock=clock)
    assert orin.name == "ina3221-hwmon" and orin.read().total_mw == pytest.approx(6096.0)
    agx = meter_for_board(AGX_ORIN_POWER, tmp_path / "agx", clock=clock)
    assert agx.read().total_basis.startswith("sum of rails")
    pi5 = meter_for_board(PI5_POWER, tmp_path, runner=lambda argv: pmic_text, clock=clock)
    assert isinstance(pi5, Pi5PmicMeter) and pi5.read().total_mw == pytest.approx(3510.32)


def test_pi4_has_no_sensor_and_points_to_an_external_meter(tmp_path: Path) -> None:
    with pytest.raises(SensorMissingError, match="no on-board power sensor.*Joulescope"):
        meter_for_board(PI4_POWER, tmp_path)
    with pytest.raises(SensorMissingError, match="Joulescope"):
        meter_for_board({"sensor": "none"}, tmp_path)  # default hint


def test_auto_never_falls_back_to_anything_else(tmp_path: Path) -> None:
    # a Jetson config on a root without its sensor files: an error, not a simulator or a guess
    with pytest.raises(SensorMissingError, match="6-0040"):
        meter_for_board(NANO_POWER, tmp_path)


def test_explicit_none_is_a_null_meter(tmp_path: Path, clock) -> None:
    meter = meter_for_board(PI4_POWER, tmp_path, kind="none", clock=clock)
    assert isinstance(meter, NoMeter)
    sampler = Sampler(meter, clock=clock)
    sampler.sample_once()
    assert not sampler.energy_mj(clock.t_s - 0.01, clock.t_s).valid


def test_explicit_kinds(tmp_path: Path, pmic_text: str, clock) -> None:
    with pytest.raises(SensorMissingError, match="not the Raspberry Pi 5 PMIC"):
        meter_for_board(NANO_POWER, tmp_path, kind="pmic", runner=lambda argv: pmic_text)
    with pytest.raises(SensorMissingError):
        meter_for_board(PI5_POWER, tmp_path, kind="ina3221")
    drv = FakeJoulescopeDriver(lambda t: 1.0, 0.0, 0.0)
    js = meter_for_board(PI4_POWER, tmp_path, kind="joulescope", joulescope_driver=drv, clock=clock)
    assert isinstance(js, JoulescopeMeter)
    js.close()


def test_ina3221_on_a_board_without_one_names_the_meters_that_work(tmp_path: Path) -> None:
    with pytest.raises(SensorMissingError) as pi4:
        meter_for_board(PI4_POWER, tmp_path, kind="ina3221")
    line = str(pi4.value)
    assert "\n" not in line and "not an INA3221" in line
    assert "--meter joulescope" in line and "--meter none" in line and "--meter auto" not in line  # auto fails too
    with pytest.raises(SensorMissingError, match="--meter auto, --meter joulescope or --meter none"):
        meter_for_board(PI5_POWER, tmp_path, kind="ina3221")
    with pytest.raises(SensorMissingError, match="--meter joulescope .* or --meter none"):
        meter_for_board(PI4_POWER, tmp_path, kind="pmic")  # "use --meter auto" would fail on a Pi 4 as well


def test_ina3221_cli_error_on_a_pi4_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    import shutil

    from edgeexit.sim.kernel import SIM_DIR
    from tests.cli.helpers import assert_one_line_error, edgeexit, json_out

    tree = tmp_path / "pi4"
    json_out(edgeexit("sim", "init", "--board", "raspberry-pi-4", "--json", str(tree)))
    shutil.rmtree(str(tree / SIM_DIR))  # no simulator marker: treated as a real Pi 4
    assert_one_line_error(
        edgeexit("profile", "--board", "raspberry-pi-4", "--sysfs-root", str(tree), "--meter", "ina3221",
                 "--out", str(tmp_path / "p.json")),
        "INA3221", "--meter joulescope", "--meter none",
    )


def test_bad_kind_and_table(tmp_path: Path) -> None:
    with pytest.raises(BoardConfigError, match="auto, ina3221, pmic, joulescope, none"):
        meter_for_board(NANO_POWER, tmp_path, kind="rapl")
    with pytest.raises(BoardConfigError, match=r"\[\[power.ina3221\]\]"):
        meter_for_board({"sensor": "ina3221-hwmon"}, tmp_path)
