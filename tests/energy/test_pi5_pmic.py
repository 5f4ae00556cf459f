"""Raspberry Pi 5 PMIC meter against captured-format ``vcgencmd pmic_read_adc`` output."""
from __future__ import annotations

import os
import random
from typing import List, Sequence

import pytest

from edgeexit.boards.config import load_board
from edgeexit.energy import Pi5PmicMeter, meter_for_board, parse_pmic_read_adc
from edgeexit.energy.pi5_pmic import PMIC_ARGV
from edgeexit.errors import MeterError, SensorMissingError

# Sum over the 12 rails of A * V for tests/energy/data/pmic_read_adc_pi5.txt, in mW.
EXPECTED_TOTAL_MW = 3510.32


class ScriptedVcgencmd:
    """Answers ``vcgencmd pmic_read_adc`` with the given outputs in turn (the last one repeats)."""

    def __init__(self, *outputs: str) -> None:
        self.outputs = list(outputs)
        self.calls: List[List[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        out = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        if isinstance(out, BaseException):
            raise out
        return out


def test_parse_pairs_by_name_and_converts_units(pmic_text: str) -> None:
    current_ma, voltage_mv = parse_pmic_read_adc(pmic_text)
    assert len(current_ma) == 12
    assert current_ma["VDD_CORE"] == pytest.approx(2000.0)
    assert voltage_mv["VDD_CORE"] == pytest.approx(900.0)
    assert voltage_mv["EXT5V"] == pytest.approx(5100.0)
    assert "EXT5V" not in current_ma  # the Pi 5 does not measure input current
    assert "BATT" not in voltage_mv  # nanV without a battery


def test_total_is_sum_of_rails_and_says_it_underestimates(pmic_text: str, clock) -> None:
    runner = ScriptedVcgencmd(pmic_text)
    meter = Pi5PmicMeter(runner=runner, clock=clock)
    r = meter.read()
    assert runner.calls[-1] == PMIC_ARGV == ["vcgencmd", "pmic_read_adc"]
    assert len(r.rails_mw) == 12
    assert r.rails_mw["VDD_CORE"] == pytest.approx(1800.0)
    assert r.rails_mw["DDR_VDDQ"] == 0.0
    assert r.total_mw == pytest.approx(EXPECTED_TOTAL_MW)
    assert "no input current" in r.total_basis and "underestimates" in r.total_basis
    assert r.input_voltage_mv == pytest.approx(5100.0)
    assert r.t_s == clock.t_s


def test_pairing_does_not_depend_on_line_order_or_indices(pmic_text: str, clock) -> None:
    lines = pmic_text.splitlines()
    random.Random(4).shuffle(lines)
    r = Pi5PmicMeter(runner=ScriptedVcgencmd("\n".join(lines) + "\n"), clock=clock).read()
    assert r.rails_mw["VDD_CORE"] == pytest.approx(1800.0)
    assert r.total_mw == pytest.approx(EXPECTED_TOTAL_MW)


def test_third_party_fit_is_labelled(pmic_text: str, clock) -> None:
    r = Pi5PmicMeter(runner=ScriptedVcgencmd(pmic_text), clock=clock, total="fit").read()
    assert r.total_mw == pytest.approx(1.1451 * EXPECTED_TOTAL_MW + 587.9)
    assert "third-party" in r.total_basis


def test_missing_or_nan_value_drops_the_sample(pmic_text: str, clock) -> None:
    broken = pmic_text.replace("VDD_CORE_V volt(15)=0.90000000V", "VDD_CORE_V volt(15)=nanV")
    runner = ScriptedVcgencmd(pmic_text, broken, "\n".join(
        ln for ln in pmic_text.splitlines() if "HDMI_A" not in ln
    ))
    meter = Pi5PmicMeter(runner=runner, clock=clock)
    r = meter.read()
    assert r.total_mw is None and r.failed_rails == ["VDD_CORE"]
    r = meter.read()
    assert r.total_mw is None and r.failed_rails == ["HDMI"]


def test_runner_failure_during_sampling_drops_the_sample(pmic_text: str, clock) -> None:
    meter = Pi5PmicMeter(runner=ScriptedVcgencmd(pmic_text, OSError(11, "EAGAIN"), pmic_text), clock=clock)
    assert meter.read().total_mw is None
    assert meter.read().total_mw == pytest.approx(EXPECTED_TOTAL_MW)


def test_pi_without_pmic_is_sensor_missing_and_points_to_external_meter(clock) -> None:
    runner = ScriptedVcgencmd('error=1 error_msg="Command not registered"\n')
    with pytest.raises(SensorMissingError, match="Joulescope"):
        Pi5PmicMeter(runner=runner, clock=clock)


def test_unrecognised_output_is_sensor_missing(clock) -> None:
    with pytest.raises(SensorMissingError):
        Pi5PmicMeter(runner=ScriptedVcgencmd("volt=0.8703V\n"), clock=clock)


def test_default_runner_without_vcgencmd_names_the_package(clock, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty PATH: no vcgencmd on this machine
    with pytest.raises(SensorMissingError, match="raspi-utils"):
        Pi5PmicMeter(clock=clock)


def test_bad_total_option(pmic_text: str, clock) -> None:
    with pytest.raises(MeterError, match="pmic_sum"):
        Pi5PmicMeter(runner=ScriptedVcgencmd(pmic_text), clock=clock, total="wall")


def test_pi5_firmware_without_pmic_read_adc_names_a_firmware_update(tmp_path, monkeypatch) -> None:
    # A Pi 5 whose firmware predates pmic_read_adc: the real vcgencmd answers "Command not registered".
    vcgencmd = tmp_path / "bin" / "vcgencmd"
    vcgencmd.parent.mkdir()
    vcgencmd.write_text('#!/bin/sh\ncase "$1" in\n  measure_clock) echo "frequency(48)=2400000000" ;;\n'
                        '  *) echo \'error=1 error_msg="Command not registered"\' ;;\nesac\n')
    vcgencmd.chmod(0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(vcgencmd.parent, os.environ["PATH"]))
    for kind in ("auto", "pmic"):
        with pytest.raises(SensorMissingError) as err:
            meter_for_board(load_board("raspberry-pi-5").power, tmp_path, kind=kind)
        msg = str(err.value)
        assert "Pi 5" in msg and "firmware" in msg and "sudo apt full-upgrade" in msg and "rpi-eeprom-update" in msg
        assert "has no PMIC" not in msg and "only the Pi 5" not in msg and "\n" not in msg


def _fake_vcgencmd(tmp_path, monkeypatch, script: str) -> None:
    vcgencmd = tmp_path / "bin" / "vcgencmd"
    vcgencmd.parent.mkdir(exist_ok=True)
    vcgencmd.write_text("#!/bin/sh\n" + script)
    vcgencmd.chmod(0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(vcgencmd.parent, os.environ["PATH"]))


def test_a_user_who_cannot_open_dev_vcio_is_told_to_join_the_video_group(tmp_path, monkeypatch) -> None:
    # vcgencmd's mbox_open() prints this on stdout and exits -1 for a user outside the video group (or in a
    # container without the device); the meter used to read it as "not a Raspberry Pi 5 PMIC".
    _fake_vcgencmd(tmp_path, monkeypatch, 'echo "Can\'t open device file: /dev/vcio"\n'
                   'echo "Try creating a device file with: sudo mknod /dev/vcio c 100 0"\nexit 255\n')
    for kind in ("auto", "pmic"):
        with pytest.raises(SensorMissingError) as err:
            meter_for_board(load_board("raspberry-pi-5").power, tmp_path, kind=kind)
        msg = str(err.value)
        assert "video group" in msg and "/dev/vcio" in msg and "\n" not in msg
        assert "not a Raspberry Pi 5 PMIC" not in msg


def test_a_failing_vcgencmd_is_one_line_with_its_status(tmp_path, monkeypatch) -> None:
    # a missing sensor, so --meter auto runs on without energy, with this line as its warning
    _fake_vcgencmd(tmp_path, monkeypatch, 'echo "VCHI initialization failed"\nexit 1\n')
    with pytest.raises(SensorMissingError, match=r"failed with status 1: VCHI initialization failed; .*--meter none"):
        Pi5PmicMeter(board_is_pi5=True)


def test_a_firmware_error_answer_with_a_non_zero_status_is_still_read(tmp_path, monkeypatch) -> None:
    _fake_vcgencmd(tmp_path, monkeypatch, 'echo \'error=2 error_msg="Command not registered"\'\nexit 2\n')
    with pytest.raises(SensorMissingError, match="predates the PMIC power monitor"):
        Pi5PmicMeter(board_is_pi5=True)
