"""Was a clock write honoured? The kernel may accept a write that the clock does not follow.

cpufreq's ``scaling_setspeed`` store returns success even when the request fails [K49][K510]; the
Pi 5 firmware floors the ARM clock at 1.5 GHz and soft-throttling can raise it above the request
[RPi#5876][EEP#518]; nvpmodel or a thermal cap may hold ``max`` below it. So the controller reads
the frequency back after every pin and compares it with what the kernel's rounding allows.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

_MEASURE_CLOCK = re.compile(r"^\s*frequency\(\d+\)=(\d+)\s*$")


def expected_freq(table: List[int], target: int) -> List[int]:
    """The frequencies a correct kernel may settle on for ``target``: the table entries just below
    and just above it (cpufreq RELATION_L/H, devfreq's ceil or floor OPP), clamped to the table."""
    if not table:
        return [target]
    t = sorted(table)
    if target <= t[0]:
        return [t[0]]
    if target >= t[-1]:
        return [t[-1]]
    below = [f for f in t if f <= target][-1]
    above = [f for f in t if f >= target][0]
    return sorted({below, above})


def snap_to_table(table: List[int], measured: int, rel_tol: float = 0.01) -> int:
    """A measured clock (``vcgencmd measure_clock`` counts the PLL: 1500345728 Hz for 1.5 GHz) as the
    table entry it is within ``rel_tol`` of, else as measured. The Pis' entries are 100 MHz apart (over 4 %)."""
    if not table:
        return measured
    nearest = min(table, key=lambda f: abs(f - measured))
    return nearest if abs(nearest - measured) <= rel_tol * nearest else measured


@dataclass(frozen=True)
class NotHonouredEvent:
    """A write accepted by the kernel whose read-back frequency is not what was asked for.

    Units are the domain's own (``unit``: "khz" for cpufreq, "hz" for devfreq); ``t_s`` monotonic s.
    :meth:`to_dict` (the ``not_honoured_writes`` of a run's JSON) puts the unit in the keys instead:
    ``requested_khz``/``allowed_khz``/``effective_khz``, or ``requested_hz``/... for devfreq.
    """

    domain: str
    unit: str
    requested: int
    allowed: List[int]
    effective: int
    source: str
    t_s: float

    def to_dict(self) -> Dict[str, Any]:
        u = self.unit
        return {"domain": self.domain, "requested_" + u: self.requested, "allowed_" + u: list(self.allowed),
                "effective_" + u: self.effective, "source": self.source, "t_s": self.t_s}

    def describe(self) -> str:
        if self.effective == self.requested:
            # the clock did follow: the table it was checked against is what disagrees
            return "{} runs at the requested {} {} (read back from {}), which its available-frequencies list does not " \
                   "offer (nearest: {} {}): the planner's figures assume the listed points; check that the board " \
                   "config names this clock's domain".format(self.domain, self.requested, self.unit, self.source,
                                                            " or ".join(str(f) for f in self.allowed), self.unit)
        return "{} was set to {} {} but runs at {} {} (read back from {}): the kernel accepted the write but " \
               "the clock did not follow (firmware floor, throttling or a cap)".format(
                   self.domain, self.requested, self.unit, self.effective, self.unit, self.source)


def check_honoured(domain: str, unit: str, table: List[int], requested: int, effective: int,
                   source: str, cap: Optional[int] = None) -> Optional[NotHonouredEvent]:
    """None when ``effective`` is a frequency the kernel may pick for ``requested``, else the event. ``cap``: the
    max in force when ``requested`` was above it; the clock under it then was the cap's choice, not the kernel's
    rounding, even where it is the table entry just below a request between two entries."""
    allowed = expected_freq(table, requested)
    if effective in allowed and not (cap is not None and effective <= cap < max(allowed)):
        return None
    return NotHonouredEvent(domain, unit, int(requested), allowed, int(effective), source, time.monotonic())


def parse_measure_clock_hz(text: str) -> int:
    """``vcgencmd measure_clock arm`` output (``frequency(48)=1500345728``) in Hz; ValueError otherwise."""
    for line in text.splitlines():
        m = _MEASURE_CLOCK.match(line)
        if m:
            return int(m.group(1))
    raise ValueError("not a 'vcgencmd measure_clock' answer: {!r}".format(text[:80]))
