"""Where a run's board-side latency and energy come from, chosen explicitly.

* a simulated board: :class:`~edgeexit.sim.board_probe.SimulatedBoardProbe` (the physics model; the
  modelled rail powers are also published into the simulated sensors);
* a real board with a power meter: :class:`MeterProbe` (host clock for latency, the meter's integral
  over each inference window for energy);
* otherwise the base :class:`~edgeexit.runner.BoardProbe`: host latency, energy unknown.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from edgeexit.costmodel import CostModel, PhysicsCostModel, default_profile_path, load_profile_json
from edgeexit.energy.sampler import Sampler
from edgeexit.policies.base import SampleState
from edgeexit.runner import BoardProbe
from edgeexit.runtime import InferenceResult
from edgeexit.sim.board_probe import SimulatedBoardProbe
from edgeexit.sim.physics import BoardPhysics
from edgeexit.sim.sensors import publish_to_kernel


def board_physics(session: Any, threads: int) -> BoardPhysics:
    """The physics of a simulated board session, with as many cores as the board has online."""
    online = sum(len(d.online_cpus()) for d in session.controller.online_cpus())
    return BoardPhysics(session.profile, threads=threads, cores=online or session.board.possible_cpus)


def board_meter(target: Any, kind: str = "auto") -> Any:
    """The power meter of a board target (real or simulated), always through the real backends.

    On a simulated tree the INA3221 backends read its sensor files exactly like a real board's; the
    Pi 5 PMIC backend runs the target's ``vcgencmd`` (on a simulated tree, its simulated firmware's answers). Raises
    :class:`~edgeexit.errors.SensorMissingError` where the board has no sensor (Pi 4).
    """
    from edgeexit.energy.factory import meter_for_board

    return meter_for_board(target.board.power, target.root, kind=kind, runner=target.vcgencmd())


class MeterProbe(BoardProbe):
    """Energy per inference from a sampled power meter; latency from the host clock.

    With a period, inference is periodic for real: after each inference the probe waits until the
    next period starts, metering that idle time too, so energy per period is measured, not modelled.
    """

    latency_source = "host"

    def __init__(self, sampler: Sampler, name: str, period_ms: Optional[float] = None,
                 sleep: Any = time.sleep) -> None:
        self.sampler = sampler
        self.energy_source = name
        self.period_ms = period_ms
        self._sleep = sleep
        self._n = 0
        self._t0 = 0.0
        self.last: Dict[str, Any] = {}

    def begin(self, state: SampleState) -> None:
        self._n += 1
        self._t0 = self.sampler.begin_window("inference-{}".format(self._n))

    def end(self, result: InferenceResult, state: SampleState) -> None:
        w = self.sampler.end_window("inference-{}".format(self._n))
        # A window the meter could not cover is "energy unknown", never a guess.
        rec: Dict[str, Any] = {"energy_mj": round(w.energy_mj, 6) if w.valid else None, "energy_samples": w.n_samples}
        if self.period_ms is not None:
            key = "idle-{}".format(self._n)
            t_idle = self.sampler.begin_window(key)
            remaining_s = self._t0 + self.period_ms / 1e3 - t_idle
            if remaining_s > 0:
                self._sleep(remaining_s)
            t_end = self.sampler.close_window(key)[1]
            # Idle runs from the inference window's end, not from begin_window's stamp: closing that window
            # (a streaming meter waits ~15 ms for its late data, a slow meter reads) is part of the period.
            idle = self.sampler.energy_mj(w.t1_s, t_end)
            rec["period_ms"] = self.period_ms
            rec["idle_energy_mj"] = round(idle.energy_mj, 6) if idle.valid else None
            rec["energy_period_mj"] = (round(w.energy_mj + idle.energy_mj, 6) if (w.valid and idle.valid) else None)
            rec["period_overrun"] = remaining_s <= 0
        self.last = rec

    def measure(self, result: InferenceResult) -> Dict[str, Any]:
        return dict(self.last)


class BoardRun:
    """The board side of a run: the DVFS session (or None), the probe, and the physics when simulated."""

    def __init__(self, session: Any, probe: Optional[BoardProbe], physics: Optional[BoardPhysics], sampler: Optional[Sampler]) -> None:
        self.session = session
        self.probe = probe
        self.physics = physics
        self.sampler = sampler
        self.planner: Any = None  # a DvfsPlanner once attached

    def cpu_khz(self) -> int:
        """The CPU operating point in force: the planner's (read back when it wrote) or the kernel's."""
        if self.planner is not None:
            return int(self.planner.current)
        return int(self.session.controller.running_cpu_khz())

    @property
    def simulated(self) -> bool:
        return bool(self.session is not None and self.session.simulated)

    @property
    def board_name(self) -> Optional[str]:
        return self.session.board.name if self.session is not None else None

    def describe(self) -> Optional[str]:
        return self.session.describe() if self.session is not None else None

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None


def warn_meter_ignored(meter: str, warn: Any) -> None:
    """An explicit --meter on a simulated board: said once, not silently dropped."""
    if meter != "auto" and warn is not None:
        warn("--meter {} is ignored on a simulated board: its energy is modelled, and labelled simulated".format(meter))


def make_probe(session: Any, threads: int, period_ms: Optional[float] = None, meter: str = "auto",
               meter_rate_hz: float = 200.0, warn: Any = None, physics: Optional[BoardPhysics] = None) -> BoardRun:
    """Pick the probe for an open board session (see module doc). ``warn(msg)`` reports a degraded choice."""
    from edgeexit.errors import SensorMissingError

    if session is None:
        return BoardRun(None, None, None, None)
    if session.simulated:
        warn_meter_ignored(meter, warn)
        physics = physics or board_physics(session, threads)
        kernel = session.sim
        publish = publish_to_kernel(kernel, session.board) if kernel is not None else None
        brun = BoardRun(session, None, physics, None)
        brun.probe = SimulatedBoardProbe(physics, brun.cpu_khz, period_ms=period_ms, publish=publish)
        return brun
    try:
        m = board_meter(session, meter)
    except SensorMissingError as err:
        if meter != "auto":
            raise
        if warn is not None:
            warn("{} Energy is not reported for this run.".format(err.message))
        return BoardRun(session, BoardProbe(), None, None)
    sampler = Sampler(m, rate_hz=meter_rate_hz).start()
    return BoardRun(session, MeterProbe(sampler, m.source, period_ms=period_ms), None, sampler)



def cost_model_for(brun: BoardRun, bundle: Any, threads: int, profile: Optional[Path] = None,
                   warn: Any = None) -> CostModel:
    """The planner's knowledge of the board: ``profile`` if given, else the default profile file of this
    bundle and board if `edgeexit profile` wrote one, else the board model."""
    physics = brun.physics or board_physics(brun.session, threads)
    model = PhysicsCostModel(physics, bundle)
    path = profile
    if path is None:
        candidate = default_profile_path(bundle, brun.session.board.name, brun.simulated, threads)
        path = candidate if candidate.is_file() else None
    if path is None:
        return model
    return load_profile_json(path, bundle, brun.session.board.name, fallback=model, threads=threads,
                             board_khz=brun.session.controller.cpu_opps_khz())


def attach_planner(brun: BoardRun, mode: str, runtime: Any, policy: Any, cost: CostModel,
                   deadline_ms: Optional[float], period_ms: Optional[float], governor: Optional[str] = None) -> Any:
    """Create the DVFS planner for this run (``mode`` from --dvfs) and make the probe follow it; ``governor``:
    the one the governor mode emulates (default: the board's default governor)."""
    from edgeexit.planner import DvfsPlanner

    ctl = brun.session.controller
    elapsed = brun.probe.elapsed_ms if isinstance(brun.probe, SimulatedBoardProbe) else None
    planner = DvfsPlanner(
        mode, cost, runtime, policy, ctl.set_cpu_khz, start_khz=ctl.cpu_khz(), deadline_ms=deadline_ms,
        period_ms=period_ms, elapsed_ms=elapsed, governor=governor or brun.session.profile.cpu.default_governor,
        emulate_governor=brun.simulated,
    )
    brun.planner = planner
    return planner
