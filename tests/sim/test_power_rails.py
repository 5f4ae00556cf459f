"""Where the simulated board's modelled power shows: each share on the INA3221 rail that carries it, read
back from the sensor files in the board's own layout. On the Orin Nano and Xavier NX the CPU, GPU and CV
share one rail, in2 VDD_CPU_GPU_CV [ONS][EM]: the GPU's power shows there, not on VDD_SOC."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

from edgeexit.boards.config import NOT_CONNECTED
from edgeexit.sim.kernel import SimulatedKernel
from edgeexit.sim.physics import PowerBreakdown
from edgeexit.sim.sensors import publish_to_kernel
from tests.sim.helpers import BOARDS, make_tree

SHARED = {"jetson-orin-nano": "VDD_CPU_GPU_CV", "jetson-xavier-nx": "VDD_CPU_GPU_CV"}


def _rails_mw(k: SimulatedKernel) -> Dict[str, int]:
    out = {}
    for chip in k.board.power.ina3221:
        for ch, label in enumerate(chip.channels):
            if label == NOT_CONNECTED:  # carries nothing
                continue
            if chip.driver == "ina3221x":  # 0-based IIO with a power file
                out[label] = int((k.root / chip.relpath / "in_power{}_input".format(ch)).read_text())
            else:  # 1-based hwmon: V * I
                mv = int((k.root / chip.relpath / "in{}_input".format(ch + 1)).read_text())
                ma = int((k.root / chip.relpath / "curr{}_input".format(ch + 1)).read_text())
                out[label] = mv * ma // 1000
    return out


@pytest.mark.parametrize("board", BOARDS)
def test_gpu_power_shows_on_the_rail_that_carries_the_gpu(tmp_path: Path, board: str) -> None:
    k = make_tree(tmp_path / "t", board)
    power = k.board.power
    if k.board.gpu is None or not power.ina3221:
        return
    assert power.gpu_rail is not None, "a Jetson's GPU power must show on a rail"
    if board in SHARED:
        assert power.gpu_rail == power.cpu_rail == SHARED[board]
    publish = publish_to_kernel(k, k.board)
    assert publish is not None
    # multiples of 5 W / 1000: whole mA at the rails' 5 V
    idle = PowerBreakdown(total_mw=4000.0, cpu_mw=1000.0, gpu_mw=0.0, mem_mw=500.0, other_mw=2500.0)
    busy = PowerBreakdown(total_mw=4700.0, cpu_mw=1000.0, gpu_mw=700.0, mem_mw=500.0, other_mw=2500.0)
    publish(idle)
    before = _rails_mw(k)
    publish(busy)
    after = _rails_mw(k)
    grew = {r: after[r] - before[r] for r in after if after[r] != before[r]}
    want = {power.gpu_rail: 700}
    if power.input_rail:
        want[power.input_rail] = 700
    assert grew == want


def test_fed_rails_share_their_feeder_and_the_summed_rails_add_up_to_the_modelled_total() -> None:
    """Two rails on one feeder draw a share of it together, never more than the feeder itself."""
    from edgeexit.boards.config import parse_power_table
    from edgeexit.sim.sensors import FED_RAIL_SHARE, rail_powers_mw

    power = parse_power_table({
        "sensor": "ina3221-hwmon", "cpu_rail": "CPU",
        "ina3221": [{"driver": "ina3221", "device": "1-0040", "channels": ["CPU", "SYS", "DRAM_A"]},
                    {"driver": "ina3221", "device": "1-0041", "channels": ["DRAM_B", "NC", "NC"]}],
        "fed_by": {"DRAM_A": "SYS", "DRAM_B": "SYS"},
    })
    out = rail_powers_mw(power, PowerBreakdown(total_mw=5000.0, cpu_mw=1000.0, gpu_mw=0.0, mem_mw=500.0,
                                               other_mw=3500.0))
    assert out["CPU"] == 1000.0 and out["SYS"] == 4000.0
    assert out["DRAM_A"] == out["DRAM_B"] == FED_RAIL_SHARE * 4000.0 / 2
    assert sum(out[r] for r in power.summed_rails()) == 5000.0


def test_rails_read_the_bus_voltage_their_profile_gives(tmp_path: Path) -> None:
    """The AGX Orin's core rails are measured after their regulators (VDD_GPU_SOC 843 mV, VDD_CPU_CV 780 mV
    [FNM]): at 5 V their currents read about 6x too low. A rail the profile names no voltage for reads 5 V."""
    from edgeexit.boards.profile import load_profile
    from edgeexit.sim.sensors import RAIL_VOLTAGE_MV

    k = make_tree(tmp_path / "t", "jetson-agx-orin")
    volts = load_profile(k.board).power_model.rail_voltage_mv
    assert volts["VDD_GPU_SOC"] == 843.0 and volts["VDD_CPU_CV"] == 780.0 and "VDDQ_VDD2_1V8AO" not in volts
    publish = publish_to_kernel(k, k.board, volts)
    assert publish is not None
    publish(PowerBreakdown(total_mw=20000.0, cpu_mw=3000.0, gpu_mw=6000.0, mem_mw=1000.0, other_mw=10000.0))
    gpu = k.root / k.board.power.ina3221[0].relpath
    assert (gpu / "in1_input").read_text() == "843\n" and (gpu / "curr1_input").read_text() == "{}\n".format(round(6e6 / 843))
    assert (gpu / "in2_input").read_text() == "780\n" and (gpu / "curr2_input").read_text() == "{}\n".format(round(3e6 / 780))
    dram = k.root / k.board.power.ina3221[1].relpath
    assert int((dram / "in2_input").read_text()) == RAIL_VOLTAGE_MV
    for rail, mw in _rails_mw(k).items():  # V x I still gives the modelled power, to a milliampere's worth
        want = {"VDD_GPU_SOC": 6000.0, "VDD_CPU_CV": 3000.0}.get(rail)
        if want is not None:
            assert abs(mw - want) <= 1.0
