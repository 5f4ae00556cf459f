"""Busy and idle board power from a polled meter's reads, with the sensor's lag undone.

A read of a polled meter is not the power at the moment it was taken. An INA3221 in continuous mode
converts on its own schedule, one conversion per update interval U, and a read returns the last one
finished: the power at a moment up to U before the read, at a phase the host does not know, so
uniformly spread over ``[t - U, t]``. When inferences are shorter than U (a demo inference takes
about 1 ms on a Nano; U is 7 ms at the mainline driver's default), a read taken inside an inference
mostly measured the idle time before it: the mean of those reads came out near the run's average
power, 25-35% under the busy power in a model of that case.

So each read is taken as ``v = idle + (busy - idle) * f``, where ``f`` is the busy share of the time
its value may come from (``[t - U, t]``; for a sensor without lag, 1 inside an inference and 0
outside), and busy and idle power are fitted by least squares over all reads so far. Without lag
the fit is exactly the mean of the reads inside inferences and the mean of those outside. With lag
it needs reads whose ``f`` differ, which periodic inference gives (reads fall at random phases); an
estimate whose standard error is more than ``MAX_RELATIVE_SE`` of it is not given (unknown, not a
guess). Where the chip's conversions lock to the period's phase (a period near a multiple of U, or
U near a multiple of the period), reads do not sample the load at random phases and the fit can be far
off with nothing in the reads to show it (a review found +243% and -42%): :func:`locked_period`
names such periods, and a run warns. A conversion also averages over its own time, U / 6 on a 3-channel chip (the
update interval is the channels' bus and shunt conversions in turn), so the time a value may come
from is taken as the U + U / 6 before its read: the same mean lag as the exact kernel.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Deque, Optional, Tuple

#: The time a value may come from, in update intervals: the interval and the conversion's own U / 6 (module doc).
CONVERSION_SPAN = 1.0 + 1.0 / 6.0
#: An estimate is given once its standard error is at most this share of it.
MAX_RELATIVE_SE = 0.05
#: ... and once this many reads with lag were fitted (the standard error of a few is no guide).
MIN_LAGGED_READS = 20


class BusyHistory:
    """The inference windows of a run, and the busy share of the time a read's value may come from."""

    def __init__(self, lag_s: float) -> None:
        self.lag_s = float(lag_s)
        self._windows: Deque[Tuple[float, float]] = deque()
        self._first_s: Optional[float] = None

    def add(self, t0_s: float, t1_s: float) -> None:
        """A closed inference window (windows come in time order)."""
        if self._first_s is None:
            self._first_s = t0_s
        self._windows.append((t0_s, t1_s))

    def busy_share(self, t_s: float) -> Optional[float]:
        """The busy share of ``[t_s - lag, t_s]`` (without lag: whether ``t_s`` lies in a window), for reads in
        time order, every window up to ``t_s`` added. None before the run: what ran then is not known."""
        lag, windows = self.lag_s, self._windows
        if self._first_s is None or t_s - lag < self._first_s:
            return None
        while windows and windows[0][1] <= t_s - lag:
            windows.popleft()  # ended before this read's span, so before any later one's
        if lag <= 0:
            return 1.0 if windows and windows[0][0] < t_s < windows[0][1] else 0.0
        busy = 0.0
        for t0, t1 in windows:
            if t0 >= t_s:
                break
            busy += min(t1, t_s) - max(t0, t_s - lag)
        return busy / lag


class BusyIdleFit:
    """Least squares of ``v = idle + (busy - idle) * f`` over reads ``(f, v)``, kept as running sums."""

    def __init__(self, lagged: bool) -> None:
        self.lagged = lagged
        self.n = 0
        self._s = [0.0] * 5  # sums of f, f*f, v, f*v, v*v

    def add(self, share: float, mw: float) -> None:
        s = self._s
        self.n += 1
        s[0] += share
        s[1] += share * share
        s[2] += mw
        s[3] += share * mw
        s[4] += mw * mw

    @property
    def busy_reads(self) -> float:
        """The reads fitted, each counted by its busy share (without lag: the reads inside inferences)."""
        return self._s[0]

    def busy_mw(self) -> Optional[float]:
        return self._estimate(True)

    def idle_mw(self) -> Optional[float]:
        return self._estimate(False)

    def _estimate(self, busy: bool) -> Optional[float]:
        n = self.n
        if n == 0:
            return None
        sf, sff, sv, sfv, svv = self._s
        sxx = sff - sf * sf / n
        if sxx <= 1e-12 * n:  # every f alike: only a side every read lies wholly on is known
            whole = sf / n
            return sv / n if (busy and whole > 1.0 - 1e-9) or (not busy and whole < 1e-9) else None
        beta = (sfv - sf * sv / n) / sxx
        alpha = (sv - beta * sf) / n
        value = alpha + beta if busy else alpha
        if not self.lagged:
            return value  # the two means: as exact as the reads
        if n < MIN_LAGGED_READS or value <= 0:
            return None
        syy = svv - sv * sv / n
        residual = max(syy - beta * beta * sxx, 0.0) / (n - 2)
        at = 1.0 if busy else 0.0
        se = math.sqrt(residual * (1.0 / n + (at - sf / n) ** 2 / sxx))
        return value if se <= MAX_RELATIVE_SE * value else None


def locked_period(period_s: float, lag_s: float, tolerance: float = 0.02) -> bool:
    """Whether a period lies within ``tolerance`` of a multiple of the update interval ``lag_s`` (or it of the period),
    so that the chip's conversions fall at nearly the same phase of every period."""
    if period_s <= 0 or lag_s <= 0:
        return False
    long, short = max(period_s, lag_s), min(period_s, lag_s)
    n = round(long / short)
    return n >= 1 and abs(long - n * short) <= tolerance * long
