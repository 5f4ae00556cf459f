"""DVFS planning under a deadline: the operating point that finishes the remaining work in time at the
least energy, re-planned when the exit forecast changes.

The planner is a runtime hook. Before block 0 and whenever the policy's forecast (``planned_exit``)
changes, it picks the CPU operating point f minimizing

    E(f) = busy_mw(f) * (W(f) + transition) + idle energy until the period ends
           (idle at f, or dropping to the lowest-idle-power point when that pays)

where W(f) is the forecast remaining work (blocks up to the forecast exit plus its head, in ms at f),
subject to finishing by the deadline even if the forecast is wrong:

    t_elapsed + transition + W(f) + R(f_max) + transition <= deadline

R is the worst case beyond the forecast at the maximum operating point: every block after the
forecast exit's, and every head still ahead that the policy may evaluate, except the forecast one
(a policy may evaluate an earlier head first, or step on after a miss). Heads of exits calibration
disabled never run, so they count nowhere. A misprediction therefore raises the operating point
enough to still meet the deadline, and a deadline the worst case cannot meet even at f_max runs at
f_max. For a policy with a prior (its typical forecast) the planner keeps a home point, the least
energy steady point for that work, and charges leaving it the transition back too. Between
inferences it drops to the operating point with the lowest idle power when the idle gap pays for
the two transitions. It never touches sysfs when the operating point does not change.

Modes (``--dvfs``): ``planned`` (the above), ``race`` (race-to-idle: pinned at the maximum, also
while idle), ``worst-case`` (pinned once at the lowest point where the worst-case path meets the
deadline), ``governor`` (the board's default governor: left alone on a real board; on a simulated
board emulated per inference from the previous period's utilisation, schedutil: 1.25 * f_max * util,
ondemand: f_max above 80% load, else proportional), ``none`` (touch nothing).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edgeexit.bundle.manifest import SegmentSpec
from edgeexit.costmodel import CostModel
from edgeexit.errors import EdgeExitError
from edgeexit.policies.base import ExitPolicy, SampleState
from edgeexit.runtime import InferenceResult, Runtime, RuntimeHooks

LOAD_DRIVEN = ("schedutil", "ondemand")  # the governors whose response to load --dvfs governor emulates
MODES = ("planned", "race", "worst-case", "governor", "none")


class DvfsPlanner(RuntimeHooks):
    """Sets the CPU operating point between segments (see module doc)."""

    def __init__(
        self,
        mode: str,
        cost: CostModel,
        runtime: Runtime,
        policy: ExitPolicy,
        set_cpu_khz: Optional[Callable[[int], int]],
        start_khz: int,
        deadline_ms: Optional[float] = None,
        period_ms: Optional[float] = None,
        elapsed_ms: Optional[Callable[[], float]] = None,
        governor: str = "schedutil",
        emulate_governor: bool = True,
    ) -> None:
        if mode not in MODES:
            raise EdgeExitError("unknown --dvfs mode {!r}; use one of {}".format(mode, ", ".join(MODES)))
        if mode == "planned" and not policy.forecasts:
            raise EdgeExitError("--dvfs planned needs a policy that forecasts its exit (predictive, pe-heuristic, oracle); "
                                "policy {} does not: use race, worst-case or governor".format(policy.name))
        if mode == "worst-case" and deadline_ms is None and period_ms is None:
            raise EdgeExitError("--dvfs worst-case picks the lowest clock that meets a deadline, and none was given: "
                                "add --deadline-ms (or --period-ms), or use --dvfs race")
        self.mode = mode
        self.cost = cost
        self.policy = policy
        self._set = set_cpu_khz
        self.deadline_ms = deadline_ms if deadline_ms is not None else period_ms
        self.period_ms = period_ms
        self.governor = governor
        self.emulate_governor = emulate_governor
        self._elapsed = elapsed_ms
        self._t0 = 0.0
        self.opps = list(cost.cpu_opps_khz)
        self.f_max = self.opps[-1]
        self.current = int(start_khz)
        # Until the first write the kernel's governor owns the clock and may move it under load, even when
        # it reads start_khz now: the first choice is always written (the controller skips true no-ops).
        self._owns_clock = False
        self.writes = 0
        self.plan_ns: List[int] = []  # host time spent planning, per inference
        self._plan_ns = 0
        self._planned_for = -2
        self._plan_block = -1  # the last block the current plan covers at its clock (the reserve covers the rest)
        self._util = 0.0
        self._tables(runtime)
        self.idle_khz = min(self.opps, key=cost.idle_mw)
        self._ranked: Dict[Any, List[Any]] = {}
        # The clock the policy's typical work would hold in steady state (no transition charged). Leaving it
        # is charged the way back as well: a myopic plan never left the first clock it wrote, because no
        # inference alone could pay the transition that every later one would have saved. A policy without
        # a prior (a first forecast that is not typical) plans myopically.
        self.home_khz: Optional[int] = None
        self._typical = getattr(policy, "typical_exit", None) if mode == "planned" else None
        # Idle gap (ms) beyond which dropping to idle_khz pays, per current operating point.
        self._drop_after_ms = {f: self._break_even_ms(f) for f in self.opps}
        if mode == "race":
            self._apply(self.f_max)
        elif mode == "worst-case":
            self._apply(self.worst_case_khz())

    # -- precomputation ---------------------------------------------------------------------------
    def _tables(self, rt: Runtime) -> None:
        """ms per segment at every operating point, and suffix sums for remaining-work queries."""
        opps = self.opps
        self.block_ms = np.array([[self.cost.segment_ms(b.spec.label, f) for f in opps] for b in rt.blocks])
        # Heads the policy never evaluates (exits calibration disabled) cost nothing, in the work or the reserve.
        self.head_ms = np.array([[self.cost.segment_ms(h.spec.label, f) if self.policy.may_evaluate(e) else 0.0 for f in opps]
                                 for e, h in enumerate(rt.exits)])
        self.exit_blocks = list(rt.exit_blocks)
        nb = len(rt.blocks)
        # The first exit at or after each block: from there on, any head the policy may run could still run.
        self.next_exit = [next(e for e, eb in enumerate(self.exit_blocks) if eb >= k) for k in range(nb)]
        # rest_blocks[k] = blocks k..end; rest_heads[e] = heads e..last (all at each OPP)
        self.rest_blocks = np.vstack([np.cumsum(self.block_ms[::-1], axis=0)[::-1], np.zeros((1, len(opps)))])
        self.rest_heads = np.vstack([np.cumsum(self.head_ms[::-1], axis=0)[::-1], np.zeros((1, len(opps)))])
        self.n_blocks = nb
        self.busy = np.array([self.cost.busy_mw(f) for f in opps])
        self.idle = np.array([self.cost.idle_mw(f) for f in opps])
        self.trans_ms = self.cost.transition_ms

    def worst_case_ms(self, col: int) -> float:
        """The threshold policy's worst case at operating point ``col``: every block and every head."""
        return float(self.rest_blocks[0, col] + self.rest_heads[0, col])

    def shortest_ms(self) -> float:
        """The fastest any inference can be: block 0 up to the cheapest exit the policy may take, and its
        head, at the maximum (a disabled exit's head costs nothing here, but no sample stops there)."""
        to_block = np.cumsum(self.block_ms[:, -1])
        return float(min(to_block[b] + self.head_ms[e, -1] for e, b in enumerate(self.exit_blocks)
                         if self.policy.may_evaluate(e) or e == len(self.exit_blocks) - 1))

    def worst_case_khz(self) -> int:
        """The lowest operating point at which the worst case meets the deadline (f_max if none does)."""
        if self.deadline_ms is None:
            return self.f_max
        for col, f in enumerate(self.opps):
            if self.worst_case_ms(col) <= self.deadline_ms:
                return f
        return self.f_max

    # -- the decision ---------------------------------------------------------------------------------
    def _now_ms(self) -> float:
        if self._elapsed is not None:
            return self._elapsed()
        return (time.perf_counter() - self._t0) * 1e3

    def choose(self, next_block: int, forecast: int, elapsed_ms: float) -> int:
        """Operating point for the work from ``next_block`` up to exit ``forecast`` (-1: the first exit,
        no forecast yet), given ``elapsed_ms`` of the inference so far.

        Candidates are ranked by energy once per (next block, forecast, current point, elapsed time) and
        cached; per call only the deadline test runs, so planning costs microseconds.
        """
        e = forecast if forecast >= 0 else 0
        last = len(self.exit_blocks) - 1
        # A stale forecast behind us, or an exit no sample can stop at: plan for the next one it can.
        while e < last and (self.exit_blocks[e] < next_block or not self.policy.may_evaluate(e)):
            e += 1
        self._plan_block = self.exit_blocks[e]
        if self.home_khz is None and self._typical is not None:
            self.home_khz = self._first_fit(self._rank(0, self._typical, 0.0, steady=True), 0.0)
        # The idle gap that follows depends on where the inference is; a 10 us grid keeps the cache small.
        key = (next_block, e, self.current, round(elapsed_ms, 2))
        ranked = self._ranked.get(key)
        if ranked is None:
            ranked = self._ranked[key] = self._rank(next_block, e, elapsed_ms)
        return self._first_fit(ranked, elapsed_ms)

    def _first_fit(self, ranked: List[Any], elapsed_ms: float) -> int:
        if self.deadline_ms is None:
            return ranked[0][2]
        for _, need_ms, f in ranked:
            if elapsed_ms + need_ms <= self.deadline_ms:
                return f
        return self.f_max

    def _rank(self, next_block: int, e: int, elapsed_ms: float, steady: bool = False) -> List[Any]:
        """Candidates (energy, time needed including the reserve, kHz), least energy first.

        Energy = busy power over the forecast work (plus a transition if the point changes, and one
        back if it is not the home point), plus, with a period, what the rest of the period costs at
        that point: staying there idle, or dropping to the idle point when that pays (the same rule
        :meth:`end` applies). ``steady``: as if already there, for every point (what picks the home).
        """
        b = self.exit_blocks[e]
        rb, rh, hm = self.rest_blocks, self.rest_heads, self.head_ms
        # A policy may evaluate heads before the forecast one (a cheaper expected cost first) with no replan
        # in between, so the deadline test counts them at the planned point; they are not forecast work, so
        # energy does not. The reserve covers, at the maximum, every block and head past the forecast.
        first_head = self.next_exit[next_block] if self.policy.heads_before_forecast else e + 1
        before = rh[first_head] - rh[e] if first_head < e else np.zeros(len(self.opps))
        reserve = float(rb[b + 1, -1] + rh[e + 1, -1]) + self.trans_ms
        i_idle = self.opps.index(self.idle_khz)
        home = self.home_khz
        back = self.busy[self.opps.index(home)] * self.trans_ms if home is not None else 0.0
        out = []
        for c, f in enumerate(self.opps):
            tr = 0.0 if (steady or f == self.current) else self.trans_ms
            work = float(rb[next_block, c] - rb[b + 1, c] + hm[e, c])
            energy = self.busy[c] * (work + tr)
            if home is not None and f != home:
                energy += back
            if self.period_ms:
                gap = max(0.0, self.period_ms - elapsed_ms - tr - work)
                stay = self.idle[c] * gap
                drop = (self.busy[i_idle] + self.busy[c]) * self.trans_ms + self.idle[i_idle] * max(0.0, gap - self.trans_ms)
                energy += min(stay, drop) if gap > self.trans_ms else stay
            else:
                energy -= self.idle[i_idle] * (work + tr)  # no period: the energy above idle
            out.append((energy, tr + work + float(before[c]) + reserve, f))
        out.sort()
        return out

    def _apply(self, f: int) -> None:
        if f == self.current and self._owns_clock:
            return  # never touch sysfs for nothing
        if self._set is not None and not (self.mode == "governor" and self.emulate_governor):
            self.current = int(self._set(f))
            self.writes += 1
            self._owns_clock = True
        else:
            self.current = int(f)

    # -- hooks ----------------------------------------------------------------------------------------
    def begin(self, state: SampleState) -> None:
        self._t0 = time.perf_counter()
        self._plan_ns = 0
        self._planned_for = -2
        if self.mode == "governor" and self.emulate_governor:
            self._apply(self._governor_khz())

    def before_segment(self, spec: SegmentSpec, state: SampleState) -> None:
        # Plan before block 0, before the first block after every new forecast, and before a block past the
        # planned one (a policy that runs on without a new forecast: its reserve was counted at the maximum
        # clock, so the plan must be made again); heads never trigger it.
        if self.mode != "planned" or spec.kind != "block" or \
                (state.planned_exit == self._planned_for and spec.index <= self._plan_block):
            return
        t = time.perf_counter_ns()
        self._planned_for = state.planned_exit
        self._apply(self.choose(spec.index, state.planned_exit, self._now_ms()))
        self._plan_ns += time.perf_counter_ns() - t

    def end(self, result: InferenceResult, state: SampleState) -> None:
        t = time.perf_counter_ns()
        busy_ms = self._now_ms()
        # The load the governor sees: busy over the period, or all of it when inferences run back to back.
        self._util = min(1.0, busy_ms / self.period_ms) if self.period_ms else 1.0
        if self.period_ms and self.mode == "planned" and self.current != self.idle_khz and \
                self._drop_pays(self.period_ms - busy_ms):
            self._apply(self.idle_khz)
        self.plan_ns.append(self._plan_ns + (time.perf_counter_ns() - t))

    def _break_even_ms(self, f: int) -> float:
        """Dropping from ``f`` to the idle point costs a transition now and one back up at the next
        inference (both at busy power); it pays once the idle power saved over the gap exceeds that."""
        c, i = self.opps.index(f), self.opps.index(self.idle_khz)
        saved_mw = self.idle[c] - self.idle[i]
        if saved_mw <= 0:
            return float("inf")
        return max(self.trans_ms, self.trans_ms * (self.busy[i] + self.busy[c] - self.idle[i]) / saved_mw)

    def _drop_pays(self, idle_ms: float) -> bool:
        return idle_ms > self._drop_after_ms.get(self.current, float("inf"))

    def _governor_khz(self) -> int:
        # Only these two are modelled (LOAD_DRIVEN); every board's default governor is one of them.
        if self.governor == "ondemand":
            target = self.f_max if self._util > 0.8 else self.f_max * self._util / 0.8
        else:  # schedutil: next_freq = 1.25 * max_freq * util
            target = 1.25 * self.f_max * self._util
        for f in self.opps:
            if f >= target:
                return f
        return self.f_max


def overhead_summary(plan_ns: List[int], records: List[Dict[str, Any]]) -> Dict[str, float]:
    """The planner's own host cost per inference (planning + controller bookkeeping, and the policy's
    forecasting as recorded in ``forecast_us``): what `run` and `bench` report beside block latency."""
    plan_us = np.asarray(plan_ns, dtype=np.float64) / 1e3
    out = {"planner_us_mean": float(plan_us.mean()), "planner_us_median": float(np.median(plan_us))}
    if len(plan_us) == len(records):
        forecast_us = np.asarray([r.get("forecast_us", 0.0) for r in records], dtype=np.float64)
        out["forecast_us_median"] = float(np.median(forecast_us))
        out["overhead_us_median"] = float(np.median(plan_us + forecast_us))
    return out
