"""An INA3221 rail the board total needs, unreadable when the meter opens, fails the open with one line naming
the rail, the file and the fix (it used to open, and a whole run ended rc=0 with every energy null)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List

import pytest
from energy_fixtures import AGX_ORIN_POWER, NANO_POWER, ORIN_NANO_POWER, make_agx_orin, make_nano, make_orin_nano, write

from edgeexit.energy import Ina3221Meter, Sampler, meter_for_board
from edgeexit.energy.ina3221 import OPEN_TRIES
from edgeexit.errors import SensorMissingError


def test_missing_input_rail_file_fails_the_open(tmp_path: Path, clock) -> None:
    node = make_orin_nano(tmp_path)
    (node / "curr1_input").unlink()
    with pytest.raises(SensorMissingError) as err:
        Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock)
    msg = str(err.value)
    assert "VDD_IN" in msg and str(node / "curr1_input") in msg and "does not exist" in msg
    assert "the board total" in msg and "--meter joulescope" in msg and "\n" not in msg


def test_input_rail_whose_read_fails_fails_the_open(tmp_path: Path, clock) -> None:
    node = make_nano(tmp_path)
    (node / "in_power0_input").unlink()
    (node / "in_power0_input").mkdir()  # the read fails with an errno (ENODATA/EIO on a board; EISDIR here)
    with pytest.raises(SensorMissingError, match=r"POM_5V_IN .*in_power0_input fails with EISDIR"):
        meter_for_board(NANO_POWER, tmp_path, clock=clock)


def test_summing_board_needs_every_summed_rail_at_open(tmp_path: Path, clock) -> None:
    nodes = make_agx_orin(tmp_path)
    (nodes[0] / "in3_input").unlink()
    with pytest.raises(SensorMissingError, match=r"VIN_SYS_5V0 .*part of the summed board total"):
        Ina3221Meter(tmp_path, AGX_ORIN_POWER, clock=clock)


def test_a_fed_rail_the_sum_leaves_out_does_not_fail_the_open(tmp_path: Path, clock) -> None:
    nodes = make_agx_orin(tmp_path)
    (nodes[1] / "in2_input").unlink()
    assert Ina3221Meter(tmp_path, AGX_ORIN_POWER, clock=clock).read().valid


def test_rails_the_total_does_not_need_and_bad_values_do_not_fail_the_open(tmp_path: Path, clock) -> None:
    node = make_orin_nano(tmp_path)
    (node / "curr2_input").unlink()  # the CPU rail: the total (VDD_IN) is still measured
    write(node / "curr1_input", "")  # a value read mid-update is one bad sample, not a dead rail
    meter = Ina3221Meter(tmp_path, ORIN_NANO_POWER, clock=clock)
    assert not meter.read().valid
    write(node / "curr1_input", "1200\n")
    r = meter.read()
    assert r.valid and r.failed_rails == ["VDD_CPU_GPU_CV"]


def test_sampler_warning_names_the_rails_that_failed(tmp_path: Path, clock) -> None:
    node = make_nano(tmp_path)
    warnings: List[str] = []
    sampler = Sampler(Ina3221Meter(tmp_path, NANO_POWER, clock=clock), rate_hz=10, clock=clock, warn=warnings.append)
    write(node / "in_power0_input", "nan\n")
    for _ in range(5):
        sampler.sample_once()
        clock.t_s += 0.1
    assert not sampler.energy_mj(100.0, 100.4).valid
    assert len(warnings) == 1 and "POM_5V_IN" in warnings[0]


@pytest.mark.fuse
def test_disabled_hwmon_channel_enodata_names_its_enable_file(tmp_path: Path) -> None:
    from tests.sim.helpers import fuse_mount, make_tree

    k = make_tree(tmp_path / "t", "jetson-orin-nano")
    chip = k.board.power.ina3221[0]
    curr = "{}/curr{}_input".format(chip.relpath, chip.channels.index(k.board.power.input_rail) + 1)
    power = dataclasses.asdict(k.board.power)
    with fuse_mount(k.root, "jetson-orin-nano", tmp_path / "mnt") as mnt:
        k.inject_error(curr, "ENODATA", op="read", count=OPEN_TRIES)  # mainline's answer for a disabled channel
        with pytest.raises(SensorMissingError) as err:
            meter_for_board(power, mnt)
        msg = str(err.value)
        assert "VDD_IN" in msg and "ENODATA" in msg and "in1_enable" in msg
        k.inject_error(curr, "EAGAIN", op="read", count=1)  # transient: the open retries
        assert meter_for_board(power, mnt).read().valid
