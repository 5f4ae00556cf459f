"""Keyed measurement windows, idle power and energy per period, shared by every energy source.

Modelled on zeus' ``begin_window``/``end_window``: a window is named by a key, a duplicate
``begin`` or an unknown ``end`` raises an error naming the key, and the result is a dataclass.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Dict, Optional, Tuple

from edgeexit.energy.reading import EnergyWindow, PeriodEnergy
from edgeexit.errors import MeterError


def energy_per_period_mj(
    inference_energy_mj: float, inference_s: float, idle_power_mw: float, period_s: float
) -> float:
    """Energy of one fixed period: the inference plus idle power until the next one starts.

    Units: mJ, s, mW. A period shorter than the inference means no idle time (the next inference
    starts late), so the idle part is clamped at zero.
    """
    return inference_energy_mj + idle_power_mw * max(0.0, period_s - inference_s)


class WindowedEnergySource(ABC):
    """Anything that can integrate power over a host-time window."""

    energy_method: Optional[str] = None  # how readings become a window's energy (None: nothing measured)
    polled = False  # a polled meter's windows are judged by the reads inside them (Sampler: latest_s, valid_mw)

    @abstractmethod
    def energy_mj(self, t0_s: float, t1_s: float) -> EnergyWindow:
        """Energy over ``[t0_s, t1_s]`` in host time (s). Units: mJ."""

    @abstractmethod
    def now_s(self) -> float:
        """Current host time on the clock windows use (s)."""

    def _edge_sample(self, after: bool) -> None:
        """Hook: take a fresh sample at a window edge (default: nothing); ``after``: at the end, where the
        sample must be begun after the edge (at the start, any read that ends before it will do)."""

    def _init_windows(self) -> None:
        """Subclasses call this from ``__init__``."""
        self._open_windows: Dict[str, float] = {}
        self._windows_lock = threading.Lock()

    def _windows(self) -> Dict[str, float]:
        return self._open_windows

    def begin_window(self, key: str) -> float:
        """Start the window ``key``; returns its start time (s)."""
        windows = self._windows()
        with self._windows_lock:
            if key in windows:
                raise MeterError(
                    f"Measurement window {key!r} already exists; end it first or use another key."
                )
        self._edge_sample(after=False)  # sample first so the read's own time lies outside the window
        t0_s = self.now_s()
        with self._windows_lock:
            windows[key] = t0_s
        return t0_s

    def end_window(self, key: str) -> EnergyWindow:
        """End the window ``key`` and return its energy."""
        t0_s, t1_s = self.close_window(key)
        return self.energy_mj(t0_s, t1_s)

    def close_window(self, key: str) -> Tuple[float, float]:
        """End the window ``key`` without measuring it; returns its (start, end) times (s).

        For a caller that integrates other bounds itself: each integration counts towards the meter's
        invalid-window warning, so measuring a window nobody reads would count a gap twice."""
        t1_s = self.now_s()
        windows = self._windows()
        with self._windows_lock:
            if key not in windows:
                raise MeterError(
                    f"Measurement window {key!r} was never begun (open windows: "
                    f"{sorted(windows) or 'none'}); call begin_window({key!r}) first."
                )
            t0_s = windows.pop(key)
        self._edge_sample(after=True)
        return t0_s, t1_s

    def cancel_window(self, key: str) -> None:
        """Forget the window ``key`` without measuring it."""
        windows = self._windows()
        with self._windows_lock:
            if windows.pop(key, None) is None:
                raise MeterError(f"Measurement window {key!r} was never begun; nothing to cancel.")

    def idle_power_mw(self, t0_s: float, t1_s: float) -> float:
        """Mean power over an idle interval ``[t0_s, t1_s]`` (mW).

        Raises :class:`MeterError` when the interval has no good samples.
        """
        window = self.energy_mj(t0_s, t1_s)
        if not window.valid:
            raise MeterError(
                f"No valid power samples between {t0_s:.3f} s and {t1_s:.3f} s; idle power is "
                "unknown. Sample for longer or check the sensor."
            )
        return window.mean_power_mw

    def period_energy(self, t0_s: float, t1_s: float, next_start_s: float) -> PeriodEnergy:
        """Energy of one period: inference ``[t0_s, t1_s]`` plus idle ``[t1_s, next_start_s]``."""
        inference = self.energy_mj(t0_s, t1_s)
        idle = self.energy_mj(t1_s, next_start_s) if next_start_s > t1_s else None
        idle_ok = idle is None or idle.valid
        return PeriodEnergy(
            inference_energy_mj=inference.energy_mj,
            idle_energy_mj=idle.energy_mj if idle is not None else 0.0,
            inference_s=t1_s - t0_s,
            period_s=max(next_start_s, t1_s) - t0_s,
            idle_power_mw=idle.mean_power_mw if idle is not None else 0.0,
            valid=inference.valid and idle_ok,
        )
