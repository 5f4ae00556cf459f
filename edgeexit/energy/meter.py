"""The one interface every power meter implements (INA3221, Pi 5 PMIC, Joulescope, ...)."""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Optional

from edgeexit.energy.reading import PowerReading

if TYPE_CHECKING:
    from edgeexit.energy.windows import WindowedEnergySource

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
    #: How often the sensor itself makes a new value, where its driver says (the INA3221 hwmon driver's
    #: update_interval); reads closer together return the same value again. None: not known.
    update_interval_s: Optional[float] = None
    #: How long before a read the value it returns may have been measured, evenly spread over that time (an
    #: INA3221 converting continuously returns its last finished conversion). 0: a read measures the moment
    #: it is taken, or the lag is not known.
    conversion_lag_s: float = 0.0

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock

    @abstractmethod
    def read(self) -> PowerReading:
        """Read every rail once. Units: mW; ``t_s`` from ``self.clock``."""

    def stream_energy(self) -> Optional["WindowedEnergySource"]:
        """The meter's own integrator of its sample stream, or None for a polled meter (the default).

        A streaming instrument (the Joulescope) timestamps every sample itself; a :class:`Sampler`
        that re-stamped its ``read()`` with the host read time would integrate stale chunk means, so
        it hands window energy to this source instead.
        """
        return None

    def close(self) -> None:
        """Release the sensor (default: nothing to release)."""

    def __enter__(self) -> "PowerMeter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _stamp(self, t_before_s: float) -> float:
        """Midpoint of the read, which is when the sample is best attributed."""
        return 0.5 * (t_before_s + self.clock())
