"""INA3221 meter against sysfs trees laid out like JetPack 4 (IIO) and JetPack 5/6 (hwmon) boards."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
from energy_fixtures import (
    AGX_ORIN_POWER,
    NANO_POWER,
    ORIN_NANO_POWER,
    make_agx_orin,
    make_hwmon_chip,
    make_nano,
    make_orin_nano,
    write,
)

from edgeexit.energy import Ina3221Meter, parse_power_table
from edgeexit.errors import BoardConfigError, MeterError, SensorMissingError


def test_nano_iio_reads_power_files_and_total_from_input_rail(tmp_path: Path, clock) -> None:
    make_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, parse_power_table(NANO_POWER), clock=clock)
    r = meter.read()
    # in_power{N}_input = mV * mA / 1000, truncated by the driver
    assert r.rails_mw == {"POM_5V_IN": 4012.0, "POM_5V_GPU": 597.0, "POM_5V_CPU": 1794.0}
    assert r.total_mw == 4012.0  # the input rail, not the sum (6403)
    assert "input rail POM_5V_IN" in r.total_basis
    assert r.t_s == clock.t_s and r.valid and r.failed_rails == []
    assert meter.name == "ina3221-iio"


def test_iio_falls_back_to_v_times_i_without_power_file(tmp_path: Path, clock) -> None:
    node = make_nano(tmp_path)
    (node / "in_power1_input").unlink()
    r = Ina3221Meter(tmp_path, NANO_POWER, clock=clock).read()
    assert r.rails_mw["POM_5V_GPU"] == pytest.approx(4976 * 120 / 1000)


def test_iio_device_number_is_scanned(tmp_path: Path, clock) -> None:
    node = make_nano(tmp_path)
    node.rename(node.parent / "iio:device3")
    assert Ina3221Meter(tmp_path, NANO_POWER, clock=clock).read().total_mw == 4012.0


def test_orin_nano_hwmon_power_is_v_times_i(tmp_path: Path, clock) -> None:
    make_orin_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock)
    r = meter.read()
    assert r.rails_mw == pytest.approx(
        {"VDD_IN": 6096.0, "VDD_CPU_GPU_CV": 2028.8, "VDD_SOC": 1519.2}
    )
    assert r.total_mw == pytest.approx(6096.0)
    assert "in7" not in str(r.rails_mw)  # the "sum of shunt voltages" channel is not a rail
    assert meter.name == "ina3221-hwmon"


def test_hwmon_number_varies_across_boots(tmp_path: Path, clock) -> None:
    make_orin_nano(tmp_path, hwmon_index=7)
    assert Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock).read().total_mw == pytest.approx(6096.0)


def test_rails_are_matched_by_kernel_label_not_position(tmp_path: Path, clock) -> None:
    make_orin_nano(tmp_path)
    power = copy.deepcopy(ORIN_NANO_POWER)
    power["ina3221"][0]["channels"] = ["VDD_IN", "VDD_SOC", "VDD_CPU_GPU_CV"]  # swapped in config
    r = Ina3221Meter(tmp_path, power, clock=clock).read()
    assert r.rails_mw["VDD_SOC"] == pytest.approx(1519.2)  # in3, where the kernel says VDD_SOC is
    assert r.rails_mw["VDD_CPU_GPU_CV"] == pytest.approx(2028.8)


def test_same_address_on_another_bus_is_found_by_label(tmp_path: Path, clock) -> None:
    make_orin_nano(tmp_path, device="7-0040")  # Xavier NX style bus number
    assert Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock).read().total_mw == pytest.approx(6096.0)


def test_unlabelled_channels_fall_back_to_position(tmp_path: Path, clock) -> None:
    node = make_orin_nano(tmp_path)
    for n in (1, 2, 3):
        (node / f"in{n}_label").unlink()
    r = Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock).read()
    assert r.rails_mw["VDD_SOC"] == pytest.approx(1519.2)


def test_agx_orin_without_input_rail_sums_rails_skipping_nc_and_fed_rails_and_says_so(tmp_path: Path, clock) -> None:
    """VIN_SYS_5V0 feeds VDDQ_VDD2_1V8AO [EM]: adding both counts the DRAM rail twice (990 mW here)."""
    make_agx_orin(tmp_path)
    r = Ina3221Meter(tmp_path, AGX_ORIN_POWER, clock=clock).read()
    assert set(r.rails_mw) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert r.rails_mw["VDDQ_VDD2_1V8AO"] == pytest.approx(990.4)
    assert r.total_mw == pytest.approx(4968.0 + 2488.0 + 3968.0)
    assert r.total_basis.startswith("sum of rails VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0 ")
    assert "no input rail" in r.total_basis and "VDDQ_VDD2_1V8AO left out, fed by VIN_SYS_5V0" in r.total_basis


def test_a_dead_fed_rail_leaves_the_summed_total_known(tmp_path: Path, clock) -> None:
    nodes = make_agx_orin(tmp_path)
    meter = Ina3221Meter(tmp_path, AGX_ORIN_POWER, clock=clock)
    (nodes[1] / "curr2_input").unlink()
    r = meter.read()
    assert r.failed_rails == ["VDDQ_VDD2_1V8AO"]
    assert r.total_mw == pytest.approx(4968.0 + 2488.0 + 3968.0)
    (nodes[0] / "curr3_input").unlink()  # a summed rail: the total is unknown, not low
    assert meter.read().total_mw is None


def test_wrong_labels_name_the_fix(tmp_path: Path, clock) -> None:
    make_hwmon_chip(tmp_path, "1-0040", ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"], [(5000, 1)] * 3)
    with pytest.raises(MeterError, match=r"VDD_IN.*\[\[power.ina3221\]\]"):
        Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock)


def test_missing_chip_is_sensor_missing(tmp_path: Path, clock) -> None:
    with pytest.raises(SensorMissingError, match="6-0040"):
        Ina3221Meter(tmp_path, NANO_POWER, clock=clock)


def test_iio_config_does_not_read_a_hwmon_tree(tmp_path: Path, clock) -> None:
    make_orin_nano(tmp_path)
    with pytest.raises(SensorMissingError):
        Ina3221Meter(tmp_path, NANO_POWER, clock=clock)


# Negative beyond the shunt offset of zero: a fault, not power (tests/energy/test_ina3221_negative.py).
@pytest.mark.parametrize("bad", ["", "nan", "garbage\n", "-nan\n", "inf\n", "-5000\n", "-101\n", "-100.5\n"])
def test_unreadable_input_rail_drops_the_sample(tmp_path: Path, clock, bad: str) -> None:
    node = make_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, NANO_POWER, clock=clock)
    write(node / "in_power0_input", bad)
    r = meter.read()
    assert r.total_mw is None and not r.valid
    assert r.failed_rails == ["POM_5V_IN"]
    assert r.rails_mw == {"POM_5V_GPU": 597.0, "POM_5V_CPU": 1794.0}


def test_oserror_on_read_drops_the_sample(tmp_path: Path, clock) -> None:
    node = make_orin_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock)
    # A read that fails with an OSError (EAGAIN/EIO on I2C on a board; EISDIR here).
    (node / "curr2_input").unlink()
    (node / "curr2_input").mkdir()
    r = meter.read()
    assert r.failed_rails == ["VDD_CPU_GPU_CV"]
    assert r.total_mw == pytest.approx(6096.0)  # the input rail is still fine


def test_sum_board_drops_sample_when_any_rail_fails(tmp_path: Path, clock) -> None:
    nodes = make_agx_orin(tmp_path)
    meter = Ina3221Meter(tmp_path, AGX_ORIN_POWER, clock=clock)
    write(nodes[0] / "in3_input", "")
    r = meter.read()
    assert r.total_mw is None  # a partial sum would be a wrong number
    assert r.failed_rails == ["VIN_SYS_5V0"]


def test_meter_recovers_when_the_file_reads_again(tmp_path: Path, clock) -> None:
    node = make_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, NANO_POWER, clock=clock)
    write(node / "in_power0_input", "nan\n")
    assert meter.read().total_mw is None
    write(node / "in_power0_input", "4100\n")
    assert meter.read().total_mw == 4100.0


def test_sensor_tree_removed_after_open_gives_invalid_readings(tmp_path: Path, clock) -> None:
    make_nano(tmp_path)
    meter = Ina3221Meter(tmp_path, NANO_POWER, clock=clock)
    shutil.rmtree(tmp_path / "sys")
    r = meter.read()
    assert r.total_mw is None and sorted(r.failed_rails) == ["POM_5V_CPU", "POM_5V_GPU", "POM_5V_IN"]


def test_config_errors_name_the_fix() -> None:
    bad = copy.deepcopy(NANO_POWER)
    bad["ina3221"][0]["driver"] = "ina3221"
    with pytest.raises(BoardConfigError, match="driver' must be 'ina3221x'"):
        parse_power_table(bad)
    bad = copy.deepcopy(NANO_POWER)
    bad["input_rail"] = "VDD_IN"
    with pytest.raises(BoardConfigError, match="input_rail"):
        parse_power_table(bad)
    bad = copy.deepcopy(NANO_POWER)
    bad["ina3221"][0]["device"] = "0x40"
    with pytest.raises(BoardConfigError, match="6-0040"):
        parse_power_table(bad)
    with pytest.raises(BoardConfigError, match="sensor"):
        parse_power_table({"sensor": "ina219"})


@pytest.mark.parametrize("power,fed_by,needle", [
    (AGX_ORIN_POWER, {"VDDQ_VDD2_1V8AO": "VIN_NOPE"}, r"power.fed_by.VDDQ_VDD2_1V8AO' names rail 'VIN_NOPE'"),
    (AGX_ORIN_POWER, {"DRAM": "VIN_SYS_5V0"}, r"power.fed_by.DRAM' names rail 'DRAM'"),
    (AGX_ORIN_POWER, {"VDDQ_VDD2_1V8AO": "VIN_SYS_5V0", "VIN_SYS_5V0": "VDDQ_VDD2_1V8AO"}, r"itself fed by"),
    (AGX_ORIN_POWER, {"VDDQ_VDD2_1V8AO": "VDDQ_VDD2_1V8AO"}, r"is fed by 'VDDQ_VDD2_1V8AO', itself fed by"),
    (AGX_ORIN_POWER, {"VDDQ_VDD2_1V8AO": "VIN_SYS_5V0", "VIN_SYS_5V0": "VDD_GPU_SOC"}, r"itself fed by 'VDD_GPU_SOC'"),
    (ORIN_NANO_POWER, {"VDD_IN": "VDD_SOC"}, r"fed_by.VDD_IN' is the board's input_rail"),
    (AGX_ORIN_POWER, {"VDD_CPU_CV": "VIN_SYS_5V0"}, r"fed_by.VDD_CPU_CV' is the board's cpu_rail"),
    (AGX_ORIN_POWER, {"VDD_GPU_SOC": "VIN_SYS_5V0"}, r"fed_by.VDD_GPU_SOC' is the board's gpu_rail"),
    ({"sensor": "pi5-pmic", "pmic_rails": ["VDD_CORE", "DDR_VDD2", "3V3_SYS"]}, {"DDR_VDD2": "3V3_SYS"},
     r"power.fed_by' applies to INA3221 rails only \(sensor 'pi5-pmic'"),
    (AGX_ORIN_POWER, {"VDDQ_VDD2_1V8AO": 5}, r"fed_by.VDDQ_VDD2_1V8AO' must be a string"),
])
def test_bad_feeds_fail_on_one_line(power: dict, fed_by: dict, needle: str) -> None:
    bad = copy.deepcopy(power)
    bad["fed_by"] = fed_by
    with pytest.raises(BoardConfigError, match=needle) as info:
        parse_power_table(bad)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("edit,needle", [
    (lambda chips: chips[1].update(device="1-0040"), r"ina3221\[1\].device' '1-0040' is another \[\[power.ina3221\]\] chip's too"),
    (lambda chips: chips[1].update(index=1), r"ina3221\[1\].index' 1 is another \[\[power.ina3221\]\] chip's too"),
    (lambda chips: chips[1].update(channels=["NC", "VDD_CPU_CV", "NC"]), r"channels' names rail 'VDD_CPU_CV' twice"),
    (lambda chips: chips[0].update(channels=["VDD_GPU_SOC", "VDD_GPU_SOC", "VIN_SYS_5V0"]), r"names rail 'VDD_GPU_SOC' twice"),
])
def test_a_chip_or_rail_given_twice_fails_on_one_line(edit, needle: str) -> None:
    """Review finding: two chips at one address made two hwmon directories under one device, and a rail label
    on two channels was published on the first only (the other read as a dead sensor) and summed twice."""
    bad = copy.deepcopy(AGX_ORIN_POWER)
    edit(bad["ina3221"])
    with pytest.raises(BoardConfigError, match=needle) as info:
        parse_power_table(bad)
    assert "\n" not in str(info.value)
