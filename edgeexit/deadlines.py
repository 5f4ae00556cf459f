"""Deadline and period checks shared by the library (execute, the DVFS planner) and the CLI's options."""
from __future__ import annotations

import math
from numbers import Real
from typing import Any, Optional, Tuple

from edgeexit.errors import PolicyError

MAX_PERIOD_MS = 3600e3  # an hour: longer periods overflowed energy sums into inf, which JSON cannot carry


def deadline_problem(deadline_ms: Optional[float], period_ms: Optional[float]) -> Optional[str]:
    """Why this deadline cannot go with this period, or None: a periodic inference must end before the next period
    starts, so the deadline is at most the period."""
    if deadline_ms is not None and period_ms is not None and deadline_ms > period_ms:
        return ("--deadline-ms {:g} is longer than --period-ms {:g}: an inference must end before the next period "
                "starts; give a deadline of at most the period, or leave it out (it defaults to the period)".format(
                    deadline_ms, period_ms))
    return None


def real_as_float(value: Any) -> float:
    """``value`` as a float for a range check: NaN for a bool or a non-number (no range holds it), inf for an int
    too large for a float (10**400 raised a bare OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_ms(name: str, value: Any) -> Optional[float]:
    """``value`` as a float, if it is a duration the CLI's --deadline-ms/--period-ms would take: finite, above 0,
    at most MAX_PERIOD_MS (NaN passes every comparison, and then meant "no deadline"); None stays None. A float:
    a numpy or Fraction value would reach the records, which JSON cannot carry."""
    if value is None:
        return None
    as_float = real_as_float(value)
    if not (0.0 < as_float <= MAX_PERIOD_MS):
        raise PolicyError("{}={!r} is not a duration: give milliseconds above 0 and at most {:g} (finite), or None "
                          "for none".format(name, value, MAX_PERIOD_MS))
    return as_float


def check_deadline_period(deadline_ms: Any, period_ms: Any) -> Tuple[Optional[float], Optional[float]]:
    """Both durations valid, and the deadline at most the period; returns them as floats (see check_ms)."""
    deadline_ms = check_ms("deadline_ms", deadline_ms)
    period_ms = check_ms("period_ms", period_ms)
    why = deadline_problem(deadline_ms, period_ms)
    if why is not None:
        raise PolicyError(why)
    return deadline_ms, period_ms
