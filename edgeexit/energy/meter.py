"""The one interface every power meter implements (INA3221, Pi 5 PMIC, Joulescope, ...)."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, Callable

from edgeexit.energy.reading import PowerReading

Clock = Callable[[], float]


class PowerMeter(ABC):
    """A source of board power readings.

    Subclasses set ``name`` (short backend id, e.g. ``ina3221-hwmon``) and ``source`` (a human
    label saying what is measured and where). ``read()`` never raises for a transient sensor
    fault: it returns a reading with ``total_mw=None`` instead, so one bad sample cannot crash a
    run or bias a window. Construction raises :class:`~edgeexit.errors.SensorMissingError` when
    the sensor does not exist at all.
    """

    name: str = "meter"
    source: str = ""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock

    @abstractmethod
    def read(self) -> PowerReading:
        """Read every rail once. Units: mW; ``t_s`` from ``self.clock``."""

    def close(self) -> None:
        """Release the sensor (default: nothing to release)."""

    def __enter__(self) -> "PowerMeter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _stamp(self, t_before_s: float) -> float:
        """Midpoint of the read, which is when the sample is best attributed."""
        return 0.5 * (t_before_s + self.clock())
