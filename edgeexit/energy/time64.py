"""Joulescope's time64: signed 34Q30 fixed-point seconds since 2018-01-01T00:00:00Z.

Re-implemented here (same constants as ``pyjoulescope_driver.time64`` and ``pyjls.time64``) so
the meter and its tests do not need the optional driver installed.
"""
from __future__ import annotations

SECOND = 1 << 30
# 2018-01-01T00:00:00Z as a POSIX timestamp.
EPOCH_POSIX_S = 1514764800.0


def as_time64(posix_s: float) -> int:
    """POSIX seconds (``time.time()``) -> time64."""
    return int(round((posix_s - EPOCH_POSIX_S) * SECOND))


def as_posix_s(t64: int) -> float:
    """time64 -> POSIX seconds."""
    return EPOCH_POSIX_S + t64 / SECOND


def counter_to_posix_s(sample_id: float, offset_time: int, offset_counter: int, counter_rate: float) -> float:
    """Host (UTC) time of an instrument counter value through the driver's time map.

    Same formula as ``jsdrv_time_from_counter``: ``offset_time + (counter - offset_counter) /
    counter_rate`` seconds; computed relative to the offset so float64 keeps sub-microsecond
    precision.
    """
    return as_posix_s(offset_time) + (sample_id - offset_counter) / counter_rate


def to_host_s(t64: int, host_offset_t64: int) -> float:
    """time64 -> host clock seconds, where ``host_offset_t64 = as_time64(wall - host)``.

    The subtraction is done in integers so host times keep float64's full precision (POSIX
    seconds near 1.7e9 only resolve ~0.24 us).
    """
    return (t64 - host_offset_t64) / SECOND


def counter_to_host_s(
    sample_id: float, offset_time: int, offset_counter: int, counter_rate: float, host_offset_t64: int
) -> float:
    """Host clock time of an instrument counter value through the driver's time map."""
    return to_host_s(offset_time, host_offset_t64) + (sample_id - offset_counter) / counter_rate
