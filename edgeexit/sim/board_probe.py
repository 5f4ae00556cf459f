"""Simulated board time and energy per inference, and the simulated sensors that show it.

:class:`SimulatedBoardProbe` is a runtime hook: for every segment that runs it charges the modelled
latency and energy at the CPU frequency in force (read from the controller), charges the transition
latency whenever the frequency changed since the run began (a pin made before it, such as a planner's
initial one, is the clock it starts at: :meth:`SimulatedBoardProbe.settle`), and at the end of each
inference the idle time until the period ends. It also publishes the modelled rail powers into the simulated sensors
(:mod:`edgeexit.sim.sensors`), so a real meter reads the simulated board exactly as it reads a real
one. Every number it produces is labelled ``simulated``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional

from edgeexit.bundle.manifest import SegmentSpec
from edgeexit.policies.base import SampleState
from edgeexit.runner import BoardProbe
from edgeexit.runtime import InferenceResult
from edgeexit.sim.physics import BoardPhysics, PowerBreakdown


PUBLISH_EVERY_S = 0.2


class SimulatedBoardProbe(BoardProbe):
    """Board latency and energy from :class:`BoardPhysics`, never from the host clock."""

    latency_source = "simulated"
    energy_source = "simulated"
    simulated = True

    def __init__(
        self,
        physics: BoardPhysics,
        cpu_khz: Callable[[], int],
        period_ms: Optional[float] = None,
        publish: Optional[Callable[[PowerBreakdown], None]] = None,
    ) -> None:
        self.physics = physics
        self.cpu_khz = cpu_khz
        self.period_ms = period_ms
        self.publish = publish
        self._f = cpu_khz()
        self._t_s = 0.0
        self._e_mj = 0.0
        self._transitions = 0
        self._khz_trace: List[int] = []
        self.last: Dict[str, Any] = {}
        self._clock_s = 0.0  # simulated time since the run began
        self._published_s = -1.0

    def elapsed_ms(self) -> float:
        """Modelled time since the current inference began."""
        return self._t_s * 1e3

    def settle(self) -> None:
        """Take the clock in force now as the one the run starts at: a pin made before the first inference
        (a planner's initial one) happened before the run, so no inference is charged its transition."""
        self._f = self.cpu_khz()

    def _sync_freq(self) -> None:
        f = self.cpu_khz()
        if f != self._f:
            # The core stalls for the transition latency; charge it at busy power.
            tr = self.physics.transition_s
            self._t_s += tr
            self._e_mj += self.physics.power(f, True).total_mw * tr
            self._transitions += 1
            self._f = f

    def begin(self, state: SampleState) -> None:
        self._t_s = 0.0
        self._e_mj = 0.0
        self._transitions = 0
        self._khz_trace = []
        self._sync_freq()

    def before_segment(self, spec: SegmentSpec, state: SampleState) -> None:
        self._sync_freq()

    def after_segment(self, spec: SegmentSpec, invoke_ns: int, state: SampleState) -> None:
        f = self._f
        dt = self.physics.segment_s(spec.macs, f)
        self._t_s += dt
        self._e_mj += self.physics.power(f, True).total_mw * dt
        self._khz_trace.append(f)

    def end(self, result: InferenceResult, state: SampleState) -> None:
        latency_ms = self._t_s * 1e3
        energy_mj = self._e_mj
        rec: Dict[str, Any] = {
            "latency_ms": round(latency_ms, 6),
            "energy_mj": round(energy_mj, 6),
            "cpu_khz": self._khz_trace[0] if self._khz_trace else self._f,
            "cpu_khz_trace": self._khz_trace,
            "freq_transitions": self._transitions,
            "simulated": True,
        }
        # The sensors are refreshed at most every PUBLISH_EVERY_S of simulated time, like a real INA3221
        # that averages over its conversion window: file writes on every inference would dominate a run.
        publish = self.publish is not None and (self._clock_s - self._published_s >= PUBLISH_EVERY_S or self._published_s < 0)
        if publish and latency_ms > 0:
            avg = energy_mj / self._t_s  # mJ / s = mW, averaged over the inference
            busy = self.physics.power(self._f, True)
            self.publish(dataclasses.replace(busy, total_mw=avg))
            self._published_s = self._clock_s
        self._clock_s += self._t_s
        if self.period_ms is not None:
            during = self._transitions
            self._sync_freq()  # a planner may have dropped to its idle point already
            idle_s = max(0.0, self.period_ms / 1e3 - self._t_s)
            idle_bd = self.physics.power(self._f, False)
            rec["idle_cpu_khz"] = self._f
            rec["idle_freq_transitions"] = self._transitions - during  # charged in energy_period_mj
            rec["energy_period_mj"] = round(self._e_mj + idle_bd.total_mw * idle_s, 6)
            rec["period_ms"] = self.period_ms
            # An inference longer than the period delays the next one: its period is as long as it took,
            # as a metered run's is (edgeexit.probes), and the summary counts such overruns.
            rec["period_actual_ms"] = round((self._t_s + idle_s) * 1e3, 6)
            rec["period_overrun"] = self._t_s * 1e3 > self.period_ms
            self._clock_s += idle_s
            if publish:
                self.publish(idle_bd)
        self.last = rec

    def measure(self, result: InferenceResult) -> Dict[str, Any]:
        return dict(self.last)
