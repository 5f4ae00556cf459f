"""The simulated board's physics: how long a segment takes and what the board draws, per operating point.

Nothing here reads the host clock. The model, with coefficients from ``firmware_profiles/<board>.toml``:

* latency of a segment at CPU frequency f::

      t(f) = invoke_overhead + MACs / (macs_per_cycle * f * threads) + t_mem
      t_mem = mem_bound_fraction / (1 - mem_bound_fraction) * compute time at f_max   (does not scale with f)

* CPU rail power: static leakage scaled by (V / V_max)^2, plus dynamic power
  ``util * cores * cpu_ceff_pf * V^2 * f_MHz / 1000`` (mW, V in volts: pF * V^2 * MHz = uW) for the busy cores;
* board power = idle_board_mw + CPU rail + (GPU static where there is a GPU) + mem_active_mw while busy;
* every frequency change costs ``transition_latency_ns`` at active power.

Voltages come from the profile's OPP table; where the firmware manages voltage and publishes none
(Raspberry Pi), V is interpolated linearly between ``cpu_vmin_mv`` and ``cpu_vmax_mv``. Where the
firmware floors the real clock (Pi 5: ``real_min_cpu_khz``), the floor is what runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

from edgeexit.boards.profile import FirmwareProfile


@dataclass(frozen=True)
class OperatingPoint:
    """One CPU operating point as the physics sees it."""

    freq_khz: int  # requested (what sysfs reports)
    real_freq_khz: int  # what the core actually runs at
    voltage_mv: float


@dataclass(frozen=True)
class PowerBreakdown:
    """Board power by rail while in some state. Units: mW."""

    total_mw: float
    cpu_mw: float
    gpu_mw: float
    mem_mw: float
    other_mw: float
    cpu_voltage_mv: float = 0.0  # the CPU rail's voltage at this operating point (the Pi 5 PMIC reports it)


class BoardPhysics:
    """Latency and power of the simulated board for one firmware profile."""

    def __init__(self, profile: FirmwareProfile, threads: int = 1, cpu_policy: Optional[str] = None,
                 cores: Optional[int] = None) -> None:
        """``cores``: the board's online CPUs (None: unknown, as many as threads). Threads beyond them share
        cores: they neither speed a segment up nor draw more power."""
        self.profile = profile
        self.pm = profile.power_model
        policy = cpu_policy or sorted(profile.cpu.tables)[0]
        table = profile.cpu.tables[policy]
        self.freqs_khz: List[int] = list(table.freqs)
        self.threads = max(1, int(threads))
        self.cores = min(self.threads, cores) if cores else self.threads  # busy cores while a segment runs
        floor = self.pm.extra.get("real_min_cpu_khz")
        self.real_floor_khz = int(floor) if floor else 0
        vmin = self.pm.extra.get("cpu_vmin_mv")
        vmax = self.pm.extra.get("cpu_vmax_mv")
        self._opps: Dict[int, OperatingPoint] = {}
        f_lo, f_hi = self.freqs_khz[0], self.freqs_khz[-1]
        for i, f in enumerate(self.freqs_khz):
            real = max(f, self.real_floor_khz)
            if table.voltage_mv:
                v = float(table.voltage_mv[self.freqs_khz.index(real)] if real in self.freqs_khz else table.voltage_mv[i])
            elif vmin is not None and vmax is not None:
                v = vmin + (vmax - vmin) * (real - f_lo) / max(1, f_hi - f_lo)
            else:
                v = 1000.0  # no voltage information at all: dynamic power then scales with f only
            self._opps[f] = OperatingPoint(f, real, v)
        self.v_max_mv = max(op.voltage_mv for op in self._opps.values())
        self.f_max_khz = f_hi
        self.transition_s = profile.cpu.transition_latency_ns / 1e9
        mbf = min(max(self.pm.mem_bound_fraction, 0.0), 0.95)
        self._mem_ratio = mbf / (1.0 - mbf)

    # -- operating points -------------------------------------------------------------------
    def opp(self, freq_khz: int) -> OperatingPoint:
        op = self._opps.get(int(freq_khz))
        if op is None:  # between table entries (a clamped request): the kernel picks the next one up
            above = [f for f in self.freqs_khz if f >= freq_khz] or [self.f_max_khz]
            op = self._opps[above[0]]
        return op

    # -- time -------------------------------------------------------------------------------
    def compute_s(self, macs: int, freq_khz: int) -> float:
        real_hz = self.opp(freq_khz).real_freq_khz * 1e3
        return macs / (self.pm.cpu_int8_macs_per_cycle * real_hz * self.cores)

    def segment_s(self, macs: int, freq_khz: int) -> float:
        """Modelled wall time of one segment invoke at ``freq_khz``. Units: s."""
        t_mem = self._mem_ratio * self.compute_s(macs, self.f_max_khz)
        return self.pm.invoke_overhead_us / 1e6 + self.compute_s(macs, freq_khz) + t_mem

    # -- power ------------------------------------------------------------------------------
    def _cpu_static_mw(self, op: OperatingPoint) -> float:
        return self.pm.cpu_static_mw * (op.voltage_mv / self.v_max_mv) ** 2

    def _cpu_dynamic_mw(self, op: OperatingPoint, busy_cores: float) -> float:
        v = op.voltage_mv / 1000.0
        return busy_cores * self.pm.cpu_ceff_pf * v * v * (op.real_freq_khz / 1000.0) / 1000.0

    def power(self, freq_khz: int, busy: bool) -> PowerBreakdown:
        """Board power while busy (a segment running on ``threads`` cores) or idle at ``freq_khz``."""
        op = self.opp(freq_khz)
        # An idle core still clocks a little (timer ticks, cache upkeep): 2% utilisation, assumption.
        busy_cores = float(self.cores) if busy else 0.02
        cpu = self._cpu_static_mw(op) + self._cpu_dynamic_mw(op, busy_cores)
        gpu = self.pm.gpu_static_mw or 0.0
        mem = self.pm.mem_active_mw if busy else 0.0
        other = self.pm.idle_board_mw
        return PowerBreakdown(total_mw=cpu + gpu + mem + other, cpu_mw=cpu, gpu_mw=gpu, mem_mw=mem, other_mw=other,
                              cpu_voltage_mv=op.voltage_mv)

    def segment_energy_mj(self, macs: int, freq_khz: int) -> float:
        return self.power(freq_khz, True).total_mw * self.segment_s(macs, freq_khz)

    def idle_mw(self, freq_khz: int) -> float:
        return self.power(freq_khz, False).total_mw
