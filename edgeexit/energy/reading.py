"""Result dataclasses shared by every power meter: one reading, one integrated window."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass(frozen=True)
class PowerReading:
    """One sample of board power.

    ``t_s`` is host monotonic time in seconds from the meter's (injected) clock, taken at the
    middle of the read. ``total_mw`` is ``None`` when the sample is unusable (a rail it depends
    on could not be read); ``total_basis`` says what the total means (input rail, sum of rails,
    external meter ...). Units: mW, mV, s.
    """

    t_s: float
    rails_mw: Dict[str, float]
    total_mw: Optional[float]
    total_basis: str
    failed_rails: List[str] = field(default_factory=list)
    input_voltage_mv: Optional[float] = None

    @property
    def valid(self) -> bool:
        """True when the board total could be read."""
        return self.total_mw is not None


@dataclass(frozen=True)
class EnergyWindow:
    """Energy over one host-time window ``[t0_s, t1_s]``. Units: mJ, mW, s.

    ``valid`` is False when the window had no good samples near it; ``energy_mj`` and
    ``mean_power_mw`` are then 0.0 and must not be used. ``method`` names the integration rule.
    """

    energy_mj: float
    mean_power_mw: float
    n_samples: int
    method: str
    valid: bool
    t0_s: float = 0.0
    t1_s: float = 0.0
    total_basis: str = ""
    source: str = ""
    rails_energy_mj: Dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.t1_s - self.t0_s


@dataclass(frozen=True)
class PeriodEnergy:
    """Energy of one inference period: the inference window plus the idle time until the next.

    Units: mJ, mW, s. ``valid`` is False if either part could not be measured.
    """

    inference_energy_mj: float
    idle_energy_mj: float
    inference_s: float
    period_s: float
    idle_power_mw: float
    valid: bool

    @property
    def energy_mj(self) -> float:
        return self.inference_energy_mj + self.idle_energy_mj
