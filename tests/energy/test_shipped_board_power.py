"""Every shipped board config's [power] table parses and gets the right meter from meter_for_board,
reading a tree built from that table in the board's kernel layout."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest
from energy_fixtures import make_hwmon_chip, make_iio_chip

from edgeexit.energy import meter_for_board, parse_power_table
from edgeexit.errors import SensorMissingError
from edgeexit.paths import board_configs_dir

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

CONFIGS = sorted(board_configs_dir().glob("*.toml"))


def power_table(path: Path) -> Dict[str, Any]:
    return tomllib.loads(path.read_text())["power"]


def test_configs_are_shipped() -> None:
    assert {p.stem for p in CONFIGS} >= {"jetson-nano", "jetson-orin-nano", "jetson-agx-orin", "raspberry-pi-4",
                                         "raspberry-pi-5"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_power_table_gets_its_meter(path: Path, tmp_path: Path, pmic_text: str, clock) -> None:
    table = power_table(path)
    config = parse_power_table(table)
    if config.sensor == "none":
        with pytest.raises(SensorMissingError):
            meter_for_board(table, tmp_path, clock=clock)
        return
    if config.sensor == "pi5-pmic":
        meter = meter_for_board(table, tmp_path, runner=lambda argv: pmic_text, clock=clock)
        assert meter.read().total_mw == pytest.approx(3510.32)
        return
    # 5000 mV on every rail, 100 mA * (rail number): known power per rail
    expected: Dict[str, float] = {}
    n = 0
    for i, chip in enumerate(config.ina3221):
        mv_ma = []
        for rail in chip.channels:
            n += 1
            mv_ma.append((5000, 100 * n))
            if rail != "NC":
                expected[rail] = 5000 * 100 * n / 1000
        if chip.layout == "iio":
            make_iio_chip(tmp_path, chip.device, chip.channels, mv_ma, iio_index=i)
        else:
            make_hwmon_chip(tmp_path, chip.device, chip.channels, mv_ma, hwmon_index=i + 1)
    r = meter_for_board(table, tmp_path, clock=clock).read()
    assert r.rails_mw == pytest.approx(expected)
    if config.input_rail:
        assert r.total_mw == pytest.approx(expected[config.input_rail])
    else:  # a rail fed by another measured rail is already in its feeder's power
        assert r.total_mw == pytest.approx(sum(mw for rail, mw in expected.items() if rail not in config.fed_by))
