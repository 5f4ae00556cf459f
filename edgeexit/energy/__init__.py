"""Power meters and energy per inference window.

One interface, :class:`PowerMeter`, with explicitly chosen backends:

- :class:`Ina3221Meter`: Jetson INA3221 rails, JetPack 4 IIO (``ina3221x``) or JetPack 5+ hwmon
  (``ina3221``) layout, read from plain files under a sysfs root (real or simulated);
- :class:`Pi5PmicMeter`: Raspberry Pi 5 PMIC rails via ``vcgencmd pmic_read_adc`` (no input
  current: the total is the sum of PMIC rails, an underestimate);
- :class:`~edgeexit.energy.joulescope.JoulescopeMeter`: an external Joulescope (optional extra);
- :func:`~edgeexit.energy.jls.jls_energy_windows`: offline attribution of a ``.jls`` recording.

:class:`Sampler` reads a meter in a background thread and integrates power over host-time
windows (keyed ``begin_window``/``end_window``, idle power, energy per period).
:func:`meter_for_board` picks the meter from a board config's ``[power]`` table.
"""
from __future__ import annotations

from edgeexit.energy.factory import KINDS, meter_for_board
from edgeexit.energy.ina3221 import Ina3221Meter
from edgeexit.energy.meter import PowerMeter
from edgeexit.energy.pi5_pmic import Pi5PmicMeter, parse_pmic_read_adc
from edgeexit.boards.config import Ina3221Chip, PowerConfig, parse_power_table
from edgeexit.energy.reading import EnergyWindow, PeriodEnergy, PowerReading
from edgeexit.energy.sampler import Sampler
from edgeexit.energy.windows import WindowedEnergySource, energy_per_period_mj

__all__ = [
    "KINDS",
    "EnergyWindow",
    "Ina3221Chip",
    "parse_power_table",
    "Ina3221Meter",
    "PeriodEnergy",
    "Pi5PmicMeter",
    "PowerConfig",
    "PowerMeter",
    "PowerReading",
    "Sampler",
    "WindowedEnergySource",
    "energy_per_period_mj",
    "meter_for_board",
    "parse_pmic_read_adc",
]
