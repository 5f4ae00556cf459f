"""The simulated board's power sensors: a modelled power breakdown written into the board's own sensor
layout (INA3221 rails, or the Pi 5 PMIC's ``vcgencmd pmic_read_adc`` text), so a real meter reads the
simulated board exactly as it reads a real one."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional

from edgeexit.boards.config import BoardConfig, PowerConfig
from edgeexit.sim.physics import BoardPhysics, PowerBreakdown

# The bus voltage of an INA3221 rail its board's profile gives none for (``[power_model.rail_voltage_mv]``): the
# Nano's POM_5V_* rails are 5 V by name; elsewhere an assumption. The AGX Orin's core rails read ~0.8 V [FNM].
RAIL_VOLTAGE_MV = 5000.0


def bus_voltage_mv(rail_voltage_mv: Mapping[str, float], label: str) -> float:
    """What INA3221 rail ``label`` reads as its bus voltage: the profile's (``rail_voltage_mv``), else RAIL_VOLTAGE_MV."""
    return float(rail_voltage_mv.get(label, RAIL_VOLTAGE_MV))


FED_RAIL_SHARE = 0.25  # assumption: the part of a feeder's power its fed rails (AGX Orin's DRAM rail) draw


def rail_powers_mw(power: PowerConfig, bd: PowerBreakdown) -> Dict[str, float]:
    """Split a modelled breakdown over the board's INA3221 rails: input = total, CPU/GPU rails as named,
    the rest shared by the remaining connected rails. A rail another rail feeds draws a share of its
    feeder's power, which already counts it, so every summed reading still adds up to the total."""
    rails = [r for r in power.summed_rails() if r != power.input_rail]
    out: Dict[str, float] = {}
    rest = bd.total_mw
    if power.input_rail:
        out[power.input_rail] = bd.total_mw
    if power.cpu_rail and power.cpu_rail in rails:
        out[power.cpu_rail] = bd.cpu_mw
        rest -= bd.cpu_mw
    if power.gpu_rail and power.gpu_rail in rails and power.gpu_rail != power.cpu_rail:
        out[power.gpu_rail] = bd.gpu_mw
        rest -= bd.gpu_mw
    elif power.gpu_rail and power.gpu_rail == power.cpu_rail:
        out[power.cpu_rail] = bd.cpu_mw + bd.gpu_mw
        rest -= bd.gpu_mw
    others = [r for r in rails if r not in out]
    for r in others:
        out[r] = max(rest, 0.0) / len(others)
    for r, feeder in power.fed_by.items():  # the fed rails of one feeder share FED_RAIL_SHARE of it
        n_fed = sum(1 for f in power.fed_by.values() if f == feeder)
        out[r] = FED_RAIL_SHARE * out[feeder] / n_fed
    return out


def publish_to_kernel(kernel: Any, board: BoardConfig, rail_voltage_mv: Optional[Mapping[str, float]] = None,
                      ) -> Optional[Callable[[PowerBreakdown], None]]:
    """A callback writing a modelled breakdown into the simulated sensors, in the board's layout. An INA3221
    rail reads the bus voltage ``rail_voltage_mv`` gives it (RAIL_VOLTAGE_MV if none) and the matching current."""
    volts = dict(rail_voltage_mv or {})
    power = board.power
    if power.sensor == "none":
        return None

    def publish(bd: PowerBreakdown) -> None:
        if power.sensor == "pi5-pmic":
            # VDD_CORE carries the CPU at the operating point's (modelled) core voltage; the other PMIC
            # rails share 80% of the rest (the 5 V input losses and USB/PCIe loads are on no PMIC rail).
            core_mv = bd.cpu_voltage_mv
            kernel.set_rail("VDD_CORE", core_mv, bd.cpu_mw / core_mv * 1000.0)
            others = [r for r in power.pmic_rails if r != "VDD_CORE"]
            share = 0.8 * (bd.total_mw - bd.cpu_mw) / len(others)
            for r in others:
                kernel.set_rail(r, 3300.0, share / 3300.0 * 1000.0)
            return
        for label, mw in rail_powers_mw(power, bd).items():
            mv = bus_voltage_mv(volts, label)
            kernel.set_rail(label, mv, mw / mv * 1000.0)

    return publish


def publish_idle(kernel: Any, board: BoardConfig, physics: BoardPhysics) -> None:
    """Show the idle board at the clock the tree runs now: after `sim init`, and after a run restored it
    (a real sensor stops reading the run's load when the run ends)."""
    publish = publish_to_kernel(kernel, board, physics.pm.rail_voltage_mv)
    if publish is not None and board.cpu_policies:
        cur_khz = kernel.load_state()["cpufreq"][board.cpu_policies[0].name]["cur"]
        publish(physics.power(cur_khz, False))
