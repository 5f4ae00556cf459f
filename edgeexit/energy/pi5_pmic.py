"""Raspberry Pi 5 PMIC rails through ``vcgencmd pmic_read_adc``.

Output format (one line per measurement, names right-aligned)::

     3V7_WL_SW_A current(0)=0.00780744A
      VDD_CORE_A current(7)=0.75012000A
      VDD_CORE_V volt(15)=0.72178200V
         EXT5V_V volt(24)=5.09066000V
          BATT_V volt(25)=nanV

The index in ``current(N)``/``volt(N)`` does not pair a rail's current with its voltage, so lines
pair by rail name (``VDD_CORE_A`` with ``VDD_CORE_V``). ``EXT5V_V`` (the 5 V input) and
``BATT_V`` have a voltage and no current: **the Pi 5 does not measure its input current**, so total
board power is not directly measurable. The total reported here is the sum of the PMIC rails, which
underestimates board input power (it misses USB/PCIe/HAT loads on the 5 V rail and the PMIC's own
conversion losses). ``total="fit"`` applies a third-party linear fit instead (unverified).

The rails summed are fixed up front (the board config's ``pmic_rails``, else the 12 documented rails),
never taken from whatever one answer printed: a rail missing or ``nan`` in an answer makes that
reading's total unknown, so a total always means the same set of rails.
"""
from __future__ import annotations

import math
import re
import subprocess
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

from edgeexit.boards.vcgencmd import Runner, run_vcgencmd
from edgeexit.energy.meter import Clock, PowerMeter
from edgeexit.energy.reading import PowerReading
from edgeexit.errors import MeterError, SensorMissingError

PMIC_ARGV = ["vcgencmd", "pmic_read_adc"]
INPUT_VOLTAGE = "EXT5V"
# The rails pmic_read_adc prints on a Pi 5 (boards-and-sysfs.md 2.6, captured [PMIC]).
PI5_PMIC_RAILS = ("3V7_WL_SW", "3V3_SYS", "1V8_SYS", "DDR_VDD2", "DDR_VDDQ", "1V1_SYS", "0V8_SW", "VDD_CORE",
                  "3V3_DAC", "3V3_ADC", "0V8_AON", "HDMI")

# Third-party fit of wall power against the PMIC sum (board-and-sysfs.md 2.6, source uncertain).
FIT_SLOPE = 1.1451
FIT_OFFSET_MW = 587.9

BASIS_SUM = (
    "sum of Pi 5 PMIC rails (the Pi 5 has no input current sensor; this underestimates board input "
    "power: 5 V peripheral loads and PMIC conversion losses are not included)"
)
BASIS_FIT = (
    "third-party linear fit 1.1451 * (sum of PMIC rails) + 587.9 mW (unverified estimate; the Pi 5 "
    "has no input current sensor)"
)

_LINE = re.compile(r"^\s*(?P<name>\S+)_(?P<unit>[AV])\s+(?:current|volt)\(\d+\)=(?P<value>\S+?)(?P=unit)?\s*$")


def parse_pmic_read_adc(text: str) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Parse ``pmic_read_adc`` output into ``(current_ma, voltage_mv)`` keyed by rail name.

    Values that are ``nan`` or unparseable are left out (``BATT_V volt(25)=nanV`` without a
    battery). Units converted: A -> mA, V -> mV.
    """
    current_ma: Dict[str, float] = {}
    voltage_mv: Dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group("value"))
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        if m.group("unit") == "A":
            current_ma[m.group("name")] = value * 1000.0
        else:
            voltage_mv[m.group("name")] = value * 1000.0
    return current_ma, voltage_mv


def _printed_lines(text: str) -> Set[str]:
    """``NAME_A``/``NAME_V`` of every line printed, ``nan`` or garbage values included."""
    out: Set[str] = set()
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is not None:
            out.add("{}_{}".format(m.group("name"), m.group("unit")))
    return out


class Pi5PmicMeter(PowerMeter):
    """Per-rail power of the Raspberry Pi 5 PMIC; see the module docstring for what the total means.

    ``runner`` takes the argv list and returns stdout; the default runs ``vcgencmd``. Tests pass
    captured outputs and the simulated board passes its own runner. ``rails``: the rails to sum (the
    board config's ``pmic_rails``; default :data:`PI5_PMIC_RAILS`). A rail the firmware does not
    print at all is an error at open; one it prints as ``nan`` makes that reading's total unknown.
    ``board_is_pi5``: the board was selected as a Pi 5 (the factory sets it), so a firmware without
    ``pmic_read_adc`` is told to update rather than that the board has no PMIC.
    """

    name = "pi5-pmic"

    def __init__(
        self,
        runner: Optional[Runner] = None,
        clock: Clock = time.monotonic,
        total: str = "pmic_sum",
        rails: Optional[Sequence[str]] = None,
        board_is_pi5: bool = False,
    ) -> None:
        super().__init__(clock)
        if total not in ("pmic_sum", "fit"):
            raise MeterError(f"Pi5PmicMeter total={total!r}: use 'pmic_sum' or 'fit'.")
        self.runner: Runner = runner if runner is not None else run_vcgencmd
        self.total = total
        self.total_basis = BASIS_SUM if total == "pmic_sum" else BASIS_FIT
        first = self.runner(PMIC_ARGV)
        unknown_command = "error=" in first or "not registered" in first.lower()
        if unknown_command and board_is_pi5:
            # The board is a Pi 5, so it has the PMIC: its firmware predates pmic_read_adc.
            raise SensorMissingError(
                f"'vcgencmd pmic_read_adc' answered {first.strip()!r}: this Raspberry Pi 5's firmware predates "
                "the PMIC power monitor; update it (sudo apt full-upgrade; sudo rpi-eeprom-update -a; reboot), "
                "pass the right --board if this is not a Pi 5, or use --meter joulescope or --meter none."
            )
        if unknown_command:
            raise SensorMissingError(
                f"'vcgencmd pmic_read_adc' answered {first.strip()!r}: this Raspberry Pi has no PMIC "
                "power monitor (only the Pi 5 has one). Use an external meter such as a Joulescope "
                "(--meter joulescope)."
            )
        printed = _printed_lines(first)
        both = sorted(p[:-2] for p in printed if p.endswith("_A") and p[:-2] + "_V" in printed)
        if not both:
            raise SensorMissingError(
                "'vcgencmd pmic_read_adc' printed no rail with both a current and a voltage; this is "
                "not a Raspberry Pi 5 PMIC. Use an external meter (--meter joulescope)."
            )
        self.rail_names: List[str] = list(rails) if rails else list(PI5_PMIC_RAILS)
        # A rail never printed would make every total unknown: say so once, here, with the fix.
        absent = [r for r in self.rail_names if r not in both]
        if absent:
            raise SensorMissingError(
                "'vcgencmd pmic_read_adc' does not report the configured PMIC rail(s) {} (it prints a current "
                "and a voltage for: {}). Update the Pi's firmware (sudo apt full-upgrade; sudo rpi-eeprom-update "
                "-a), or make [power] pmic_rails in the board config list the rails this board prints; or use "
                "an external meter (--meter joulescope).".format(", ".join(absent), ", ".join(both))
            )
        self.source = f"Raspberry Pi 5 PMIC (vcgencmd pmic_read_adc): {len(self.rail_names)} rails"

    def read(self) -> PowerReading:
        t0 = self.clock()
        try:
            text = self.runner(PMIC_ARGV)
        except (OSError, MeterError, subprocess.SubprocessError):
            return PowerReading(self._stamp(t0), {}, None, self.total_basis, list(self.rail_names))
        stamp = self._stamp(t0)
        current_ma, voltage_mv = parse_pmic_read_adc(text)
        rails_mw: Dict[str, float] = {}
        failed: List[str] = []
        for rail in self.rail_names:
            if rail in current_ma and rail in voltage_mv:
                rails_mw[rail] = current_ma[rail] * voltage_mv[rail] / 1000.0
            else:
                failed.append(rail)
        total_mw: Optional[float] = None
        if not failed:
            total_mw = sum(rails_mw.values())
            if self.total == "fit":
                total_mw = FIT_SLOPE * total_mw + FIT_OFFSET_MW
        return PowerReading(
            t_s=stamp,
            rails_mw=rails_mw,
            total_mw=total_mw,
            total_basis=self.total_basis,
            failed_rails=failed,
            input_voltage_mv=voltage_mv.get(INPUT_VOLTAGE),
        )
