"""Guards the DVFS controller consults before and after it changes a clock.

* :class:`~edgeexit.guards.thermal.ThermalGuard`: above a temperature limit the operating point is
  never raised (lowering stays allowed); each hot episode is logged once and kept as an event.
* :func:`~edgeexit.guards.honoured.check_honoured`: a write the kernel accepted but the clock did
  not follow (firmware floors, throttling) is detected from the read-back and reported.
"""
from __future__ import annotations

from edgeexit.guards.honoured import NotHonouredEvent, check_honoured, expected_freq, parse_measure_clock_hz, snap_to_table
from edgeexit.guards.thermal import ThermalEvent, ThermalGuard, ZoneReading, default_limit_mc

__all__ = ["ThermalGuard", "ThermalEvent", "ZoneReading", "default_limit_mc", "NotHonouredEvent",
           "check_honoured", "expected_freq", "parse_measure_clock_hz", "snap_to_table"]
