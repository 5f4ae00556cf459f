"""The Pi 5 PMIC total always sums the same rails: the board config's ``pmic_rails``, never the set one
``vcgencmd pmic_read_adc`` answer happened to print (a rail ``nan`` in the first answer used to be left
out of every later total, silently)."""
from __future__ import annotations

from typing import List, Sequence

import pytest

from edgeexit.boards.config import load_board
from edgeexit.energy import Pi5PmicMeter, meter_for_board
from edgeexit.errors import SensorMissingError

EXPECTED_TOTAL_MW = 3510.32  # the 12 rails of tests/energy/data/pmic_read_adc_pi5.txt
VDD_CORE_A = "VDD_CORE_A current(7)=2.00000000A"


class Firmware:
    """``vcgencmd pmic_read_adc`` answering the given outputs in turn (the last one repeats)."""

    def __init__(self, *outputs: str) -> None:
        self.outputs = list(outputs)

    def __call__(self, argv: Sequence[str]) -> str:
        return self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]


def without(text: str, *rails: str) -> str:
    return "".join(ln + "\n" for ln in text.splitlines() if not any(ln.strip().startswith(r + "_") for r in rails))


def test_rail_nan_in_the_first_answer_is_summed_in_later_ones(pmic_text: str, clock) -> None:
    first = pmic_text.replace(VDD_CORE_A, "VDD_CORE_A current(7)=nanA")
    power = load_board("raspberry-pi-5").power
    meter = meter_for_board(power, kind="pmic", runner=Firmware(first, pmic_text, first, pmic_text), clock=clock)
    r = meter.read()
    assert r.total_mw == pytest.approx(EXPECTED_TOTAL_MW) and r.failed_rails == []
    assert sorted(r.rails_mw) == sorted(power.pmic_rails)
    r = meter.read()  # the rail is nan again: that reading's total is unknown and says which rail
    assert r.total_mw is None and r.failed_rails == ["VDD_CORE"]
    assert meter.read().total_mw == pytest.approx(EXPECTED_TOTAL_MW)


def test_without_a_config_the_documented_rails_are_summed(pmic_text: str, clock) -> None:
    first = pmic_text.replace(VDD_CORE_A, "VDD_CORE_A current(7)=nanA")
    meter = Pi5PmicMeter(runner=Firmware(first, pmic_text), clock=clock)
    assert meter.rail_names == load_board("raspberry-pi-5").power.pmic_rails  # the documented 12
    assert meter.read().total_mw == pytest.approx(EXPECTED_TOTAL_MW)


def test_rail_missing_from_a_later_answer_makes_that_total_unknown(pmic_text: str, clock) -> None:
    meter = meter_for_board(load_board("raspberry-pi-5").power, kind="pmic",
                            runner=Firmware(pmic_text, without(pmic_text, "HDMI", "0V8_AON")), clock=clock)
    r = meter.read()
    assert r.total_mw is None and r.failed_rails == ["0V8_AON", "HDMI"]


def test_the_factory_sums_the_configured_rails_only(pmic_text: str, clock) -> None:
    meter = meter_for_board({"sensor": "pi5-pmic", "pmic_rails": ["VDD_CORE", "HDMI"]}, kind="pmic",
                            runner=Firmware(pmic_text), clock=clock)
    r = meter.read()
    assert sorted(r.rails_mw) == ["HDMI", "VDD_CORE"]
    assert r.total_mw == pytest.approx(2.0 * 900.0 + 20.0 * 5.0)  # mA * V


def test_a_configured_rail_the_firmware_never_prints_is_one_error_at_open(pmic_text: str, clock) -> None:
    calls: List[Sequence[str]] = []

    def firmware(argv: Sequence[str]) -> str:
        calls.append(argv)
        return without(pmic_text, "HDMI")  # e.g. older firmware, or a board variant without the rail

    with pytest.raises(SensorMissingError) as err:
        meter_for_board(load_board("raspberry-pi-5").power, kind="pmic", runner=firmware, clock=clock)
    msg = str(err.value)
    assert "HDMI" in msg and "VDD_CORE" in msg  # the missing rail, and what it does print
    assert "firmware" in msg and "pmic_rails" in msg and "joulescope" in msg
    assert len(calls) == 1


def test_a_voltage_only_line_is_not_a_summable_rail(pmic_text: str, clock) -> None:
    with pytest.raises(SensorMissingError, match="EXT5V"):  # the 5 V input has a voltage only
        Pi5PmicMeter(runner=Firmware(pmic_text), clock=clock, rails=["VDD_CORE", "EXT5V"])
