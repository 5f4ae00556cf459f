"""DVFS planning under a deadline: the operating point that finishes the remaining work in time at the
least energy, re-planned when the exit forecast changes.

Operating points. The planner plans over the points the CPU can reach now, not over the whole table:
the cost model's points at or below the kernel's effective maximum (``scaling_max_freq``, lowered by an
nvpmodel mode, a thermal cap or another tool; the lowest over the online policies, read before the run),
so f_max below is the reachable top. A policy's min floor limits nothing: a pin below it lowers it
(saved and restored with the session). When a write is not honoured (the controller's read-back of some
policy is another point than the request: a cap set during the run, or a firmware cap that
``scaling_max_freq`` does not show), the points beyond the clock that ran are dropped and the plan is
made again over those left (the future, H below, is solved again at the inference's end, off its critical
path). Right after, in idle time, it reads the kernel's cap: a learnt cap that ``scaling_max_freq`` does not
show (a firmware cap) is hidden, and a learnt floor stays for the run. A thermal cap the kernel shows
lifts when the board cools, so every CAP_CHECK_MS of run time, between inferences, the planner reads the
kernel's cap again and plans up to it. A hidden cap cannot be seen lifting, so at the same look it asks for
the kernel's cap once, in idle time, and keeps the hidden cap only if that is refused again (planning past
it unasked would count the deadline on a clock the firmware refuses). Where a policy's max is still the one
edgeexit's own min/max pin left (an earlier run in the session), the cap is the max found before its first
write, not that pin.
Decisions are in requested points: the planner writes only when the point it wants differs from the one
it last requested (and was answered), never because the read-back does.

The plan. Before block 0, whenever the policy's forecast (``planned_exit``) changes, and before a block
past the planned exit, it picks the operating point f minimizing

    E(f) = busy_mw(f) * (tr + W(f)) + A(f)

where W(f) is the forecast remaining work (blocks up to the forecast exit plus its head, in ms at f),
tr the transition when f is not the current point, and A(f) what follows the inference (below),
subject to finishing by the deadline even if the forecast is wrong:

    t_elapsed + tr + W(f) + B(f) + min(R(f), R(f_max) + transition) <= deadline

B(f) is the heads before the forecast one that a policy may evaluate with no re-plan in between
(predictive may try a cheaper head first), at f. R is the worst case beyond the forecast: every block
after the forecast exit's, and every head after the forecast one that the policy may evaluate. It is
covered either at f itself (no re-plan need move the clock: a plan pinned at the lowest point where the
worst case fits is therefore always feasible) or by switching to f_max. Heads of exits calibration
disabled never run, so they count nowhere. A deadline the worst case cannot meet even at f_max runs at
f_max.

What follows, A(f). With a period the inference is followed by an idle gap g = period - t_elapsed -
tr - W(f), spent parked at some point k: at f (idle_mw(f) * g), or at k != f when g exceeds a
transition (busy_mw(k) * transition + idle_mw(k) * (g - transition)); either way plus H(k), the cost of
starting the next inference at k. Without a period inferences run back to back, there is no idle time,
and A(f) = H(f): the planner minimizes the inference's own energy busy_mw(f) * (tr + W(f)) (not the
energy above idle, which assumed an idle board after it).

H, the future. For a policy with a prior (its typical forecast, ``typical_exit``), H(k) is the
discounted energy (GAMMA per inference) of the inferences to come when the next one begins at point k.
It is solved exactly (policy iteration over where each inference's first plan runs and where it parks
after) on the outcomes seen so far: every inference's segments and re-plans are counted (the
MAX_OUTCOMES commonest), and each is replayed from a first plan at every point, its re-plans deciding as
they would. The solve is made again after LEARN_AFTER inferences, then every LEARN_EVERY, and whenever
the reachable points change. Before any outcome is seen, with a period, inferences begin at the point
--dvfs worst-case pins (H is its transition elsewhere); without a period, H comes from the typical work
as forecast. A new solve that would begin inferences at another point is taken only when the outcomes
show beyond doubt that it saves (_saves_for_sure), so a start point is not moved on a handful of samples.
An inference's first plan (block 0, the typical forecast) weighs each point by its expected energy over
the outcomes, everything after included, rather than by the typical work alone: a point from which a
misforecast sample must switch to a high clock (a transition on its critical path) costs what those
switches cost. This is why no inference stays at a clock only because one inference alone could not
afford to leave it, and why a point the next inference cannot leave in time (f_max under a tight
deadline) is not parked at. For a policy without a prior the next inference is taken to want f again:
H(k) = busy_mw(f) * transition for k != f, and 0 without a period.

Between inferences (``end``), with a period, it parks at the point k minimizing the same idle gap
cost plus H(k), staying included: the transition then happens in idle time, not on the next
inference's critical path. It never touches sysfs when the operating point does not change. With a
prior, it also pins its first point before the run (like race and worst-case), so inference 0 is
charged no transition for leaving the governor's clock.

Planning cost: the candidates' arrays are computed once per (next block, forecast exit, current point)
and kept in a small LRU cache (RANK_CACHE_ENTRIES); per call only the idle-gap term, a closed form in
the elapsed time, and the deadline test are evaluated, for the candidates in ascending lower bound
until the bound passes the best (usually one). The cache key holds no elapsed time, so a real board,
whose elapsed time comes from the host clock, hits it as a simulated one does. A solve of H takes a
few milliseconds, in ``end`` (idle time with a period), a dozen times in a run of a thousand.

The meter's reads. On a real board a meter reads at both edges of an inference, outside its latency
but inside its period (about 6.6 ms per period for an INA3221 over I2C). The probe reports what its
recent reads took (``read_reserve_ms``, a quantile), and the planner keeps that, rounded up to
RESERVE_STEP_MS, out of every period: the idle gap is shorter by it, and the deadline is at most what the
reads leave of the period. A simulated board's reads take no modelled time.

Modes (``--dvfs``): ``planned`` (the above), ``race`` (race-to-idle: pinned at the reachable maximum,
also while idle), ``worst-case`` (pinned once at the lowest reachable point where the worst-case path
meets the deadline), ``governor`` (the board's default governor: left alone on a real board; on a
simulated board emulated per inference from the previous period's utilisation ``util``, the busy
fraction at the clock that ran, as the kernel computes it: schedutil's get_next_freq gives 1.25 * cur *
util, the lowest reachable point at or above it; ondemand's od_update gives the reachable maximum
above 80% load, else cpuinfo_min + util * (cpuinfo_max - cpuinfo_min), the closest reachable point),
``none`` (touch nothing). The race and worst-case pins are made before the run, so inference 0 is
charged no transition for them (the simulated probe takes the clock then in force as its start).
"""
from __future__ import annotations

import bisect
import math
import time
from collections import Counter, OrderedDict
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from edgeexit.bundle.manifest import SegmentSpec
from edgeexit.costmodel import CostModel
from edgeexit.deadlines import check_deadline_period
from edgeexit.errors import PolicyError
from edgeexit.guards.honoured import snap_to_table
from edgeexit.policies.base import ExitPolicy, SampleState
from edgeexit.runtime import InferenceResult, Runtime, RuntimeHooks

LOAD_DRIVEN = ("schedutil", "ondemand")  # the governors whose response to load --dvfs governor emulates
MODES = ("planned", "race", "worst-case", "governor", "none")
GAMMA = 0.99  # discount per inference of the future energy H: about a hundred inferences ahead count
RANK_CACHE_ENTRIES = 256  # plans kept (LRU); one per (next block, forecast exit, current point) in use
MISS_UJ = 1e9  # charged for a deadline miss in the future's model (f_max runs where nothing fits)
LEARN_AFTER = (8, 16, 32, 64, 128, 256, 512)  # inferences after which H is solved again
LEARN_EVERY = 1024  # ... and then every this many
MAX_OUTCOMES = 32  # the commonest outcomes H is solved with (a few ms each solve)
ROUNDING_MS = 1e-9  # the deadline test's sums are differences of suffix sums: a picosecond covers their rounding
CAP_CHECK_MS = 10000.0  # run time between looks at the kernel's cap (a thermal cap may have lifted or appeared)
RESERVE_STEP_MS = 0.25  # the meter-read reserve moves in steps of this
SCHEDUTIL_HEADROOM = 1.25  # get_next_freq: freq + freq / 4
ONDEMAND_UP_THRESHOLD = 0.80  # od_update: up_threshold 80 (percent load)

#: How an inference went: what it did after its first plan, in order: block k as k, exit e's head as -1 - e,
#: and (next block, forecast) for each re-plan. Small ints: one is recorded per segment, on every inference.
Outcome = Tuple[Any, ...]


class _Plan(NamedTuple):
    """A plan's candidates, one per reachable point, in ascending ``bound_uj``; nothing here depends on the
    elapsed time. Lists, not arrays: per call a few candidates are weighed, where numpy's call overhead
    would dominate."""

    bound_uj: List[float]  # E(f) >= bound_uj + idle_mw_min * (period - elapsed) (without a period: == E(f))
    need_ms: List[float]  # busy_ms + heads before the forecast + reserve: what the deadline test adds
    cols: List[int]  # the point's column in opps
    busy_ms: List[float]  # transition + forecast work
    busy_uj: List[float]  # busy energy over busy_ms


class _Replay(NamedTuple):
    """The outcomes seen, replayed from every first plan: [outcome, v, f1] (v 0: the first plan at f1 from f1
    itself, 1: after a transition to it)."""

    prob: np.ndarray  # [outcome]
    busy_uj: np.ndarray  # the inference's busy energy, transitions included (and MISS_UJ if it missed)
    end_ms: np.ndarray  # when it ended
    end_col: np.ndarray  # the point it ended at


def _shortest(block_ms: Any, head_ms: Any, exit_blocks: List[int], policy: Any) -> float:
    to_block = np.cumsum(block_ms)
    return float(min(to_block[b] + head_ms[e] for e, b in enumerate(exit_blocks)
                     if policy.may_evaluate(e) or e == len(exit_blocks) - 1))


def shortest_path_ms(rt: Runtime, policy: Any, cost: Any, freq_khz: int) -> float:
    """The fastest an inference of ``policy`` (bound to ``rt``) can be at ``freq_khz``, by ``cost``: for a run
    whose clock no planner sets."""
    heads = [cost.segment_ms(h.spec.label, freq_khz) if policy.may_evaluate(e) else 0.0 for e, h in enumerate(rt.exits)]
    return _shortest([cost.segment_ms(b.spec.label, freq_khz) for b in rt.blocks], heads, list(rt.exit_blocks), policy)


def check_dvfs(mode: Any, policy: ExitPolicy, deadline_ms: Optional[float], period_ms: Optional[float]) -> None:
    """The DVFS mode, the policy and the deadline/period can plan together (checked before anything runs)."""
    check_deadline_period(deadline_ms, period_ms)
    if mode not in MODES:
        raise PolicyError("unknown --dvfs mode {!r}; use one of {}".format(mode, ", ".join(MODES)))
    if mode == "planned" and not policy.forecasts:
        raise PolicyError("--dvfs planned needs a policy that forecasts its exit (predictive, pe-heuristic, oracle); "
                          "policy {} does not: use race, worst-case or governor".format(policy.name))
    if mode == "worst-case" and deadline_ms is None and period_ms is None:
        raise PolicyError("--dvfs worst-case picks the lowest clock that meets a deadline, and none was given: "
                          "add --deadline-ms (or --period-ms), or use --dvfs race")


class DvfsPlanner(RuntimeHooks):
    """Sets the CPU operating point between segments (see module doc).

    ``cap_khz``: the highest clock the kernel lets every online CPU policy run now (None: the table's
    top); ``not_honoured``: the controller's list of not-honoured writes, which shows a cap that appears
    during the run (None: the read-back that ``set_cpu_khz`` returns is the evidence); ``cpuinfo_khz``:
    the kernel table's (min, max), which ondemand scales between (None: the cost model's ends);
    ``read_floor_khz``: reads the policy's ``scaling_min_freq`` (an nvpmodel MIN_FREQ), which an emulated
    governor never goes below, as the kernel clamps it; read at the start and every CAP_CHECK_MS of run time
    (a mode change moves it; None, or a None read: no floor); ``read_cap_khz``:
    reads the kernel's cap again during the run (the controller's ``cpu_cap_khz``; None: ``cap_khz`` stands);
    ``read_reserve_ms``: the time a period must keep for a meter's reads (see module doc); ``between``:
    called between inferences of a planned run, for the controller's upkeep in idle time; ``warn``: where a
    warning goes (a meter whose reads leave no time in the period).
    """

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
        cap_khz: Optional[int] = None,
        read_cap_khz: Optional[Callable[[], Optional[int]]] = None,
        not_honoured: Optional[Callable[[], Sequence[Any]]] = None,
        cpuinfo_khz: Optional[Tuple[int, int]] = None,
        read_floor_khz: Optional[Callable[[], Optional[int]]] = None,
        read_reserve_ms: Optional[Callable[[], float]] = None,
        between: Optional[Callable[[], None]] = None,
        warn: Optional[Callable[[str], None]] = None,
    ) -> None:
        check_dvfs(mode, policy, deadline_ms, period_ms)
        self.mode = mode
        self.cost = cost
        self.policy = policy
        self._set = set_cpu_khz
        self._not_honoured = not_honoured
        self.deadline_ms = deadline_ms if deadline_ms is not None else period_ms
        self.period_ms = period_ms
        self._given = (deadline_ms, period_ms)
        self._read_reserve = read_reserve_ms if period_ms else None
        self.reserve_ms = 0.0  # kept out of every period for the meter's reads (set_reserve_ms)
        self._resolve = False  # the future is to be solved again in end(), off the inference's critical path
        self._between = between  # the controller's own upkeep between inferences (a Pi's firmware read-back)
        self._warn = warn
        self._warned_reserve = False
        self.governor = governor
        self.emulate_governor = emulate_governor
        self._elapsed = elapsed_ms
        self._t0 = 0.0
        self._runtime = runtime
        self.table_khz = list(cost.cpu_opps_khz)  # every point the cost model knows
        self.cpuinfo_khz = cpuinfo_khz or (self.table_khz[0], self.table_khz[-1])
        self._read_floor = read_floor_khz if mode == "governor" and emulate_governor else None
        self._governor_floor_khz = int(self._read_floor() or 0) if self._read_floor is not None else 0
        self._floor_khz = 0
        self._cap_khz = int(cap_khz) if cap_khz is not None else self.table_khz[-1]
        self._read_cap = read_cap_khz
        self._hidden_cap_khz = self.table_khz[-1]  # the lowest learnt cap the kernel did not show: for the run
        self._cap_learnt = False  # a refused write taught a cap this inference: read the kernel's at its end
        self._born = time.perf_counter()
        self._run_ms = 0.0  # run time so far: inferences and their periods (modelled on a simulated board)
        self._next_look_ms = CAP_CHECK_MS
        self.current = int(start_khz)  # the clock in force, as read back (what a simulated probe runs)
        self.requested_khz = int(start_khz)  # the point last asked for: what decisions compare against
        # Until the first write the kernel's governor owns the clock and may move it under load, even when
        # it reads start_khz now: the first choice is always written (the controller skips true no-ops).
        self._owns_clock = False
        self.writes = 0
        self.plan_ns: List[int] = []  # host time spent planning, per inference
        #: (inference, moved) per scheduled solve of H (LEARN_AFTER, LEARN_EVERY; not those after the reachable
        #: points change): the first inference planned with it, and whether it moved the point inferences begin
        #: at (what the bench's timeline marks)
        self.solves: List[Tuple[int, bool]] = []
        self._plan_ns = 0
        self._planned_for = -2
        self._plan_block = -1  # the last block the current plan covers at its clock (the reserve covers the rest)
        self._util = 0.0
        self._typical = getattr(policy, "typical_exit", None) if mode == "planned" else None
        self._plans: "OrderedDict[Tuple[int, int, int], _Plan]" = OrderedDict()
        self._outcomes: "Counter[Outcome]" = Counter()  # how inferences went, counted
        self._pending: List[Outcome] = []  # ... and those not counted yet (counted when H is solved, in idle time)
        self._seen = 0
        self._ran: List[Any] = []  # this inference's outcome so far
        self._replay: Optional[_Replay] = None
        self._reach()
        # Pins made now, before the run, cost inference 0 no transition.
        if mode == "race":
            self._pin(lambda: self.f_max)
        elif mode == "worst-case":
            self._pin(self.worst_case_khz)
        elif self._typical is not None:
            self._pin(self._start_khz)  # where inferences are best begun
        elif mode == "planned":
            # no typical forecast: where a first plan already there would stay (left at the governor's clock,
            # inference 0 paid a transition the pinned baselines do not, and could miss for it)
            self._pin(lambda: self._decide(self._plan(0, self._plan_exit(0, -1), steady=True), 0.0))

    # -- the reachable operating points and what depends on them ------------------------------------------
    def _reach(self, solve: bool = True) -> None:
        """Plan over the points within the known floor and cap, and rebuild everything that depends on them
        (``solve`` False, in the middle of an inference: the future's solve, a few ms, waits for end())."""
        self.opps = opps = self._reachable()
        self.f_max = opps[-1]
        self._khz = np.asarray(opps)
        self._col = {f: c for c, f in enumerate(opps)}
        self._tables(self._runtime)
        self._set_parking(np.zeros(len(opps)), np.zeros(len(opps)))  # consistent before the future is solved
        self._first_uj = None
        self._resolve = not solve
        if solve:
            self._set_future()

    def _reachable(self) -> List[int]:
        opps = [f for f in self.table_khz if self._floor_khz <= f <= self._cap_khz]
        if not opps:  # a cap below every point (or a floor above): the nearest end is all that can run
            opps = [self.table_khz[0]] if self._cap_khz < self.table_khz[0] else [self.table_khz[-1]]
        return opps

    def set_reserve_ms(self, reserve_ms: float) -> None:
        """Keep ``reserve_ms`` of every period for work outside the inference (a real meter's edge reads, ~6
        ms per period on an INA3221 over I2C): the idle gap shrinks by it, and so does the deadline where
        the period set it or it would not leave the reserve."""
        deadline_ms, period_ms = self._given
        if not period_ms or reserve_ms == self.reserve_ms:
            return
        self.reserve_ms = reserve_ms
        if period_ms - reserve_ms < self.shortest_ms() and self._warn is not None and not self._warned_reserve:
            self._warned_reserve = True
            self._warn("the power meter's reads take about {:.2f} ms of every {:g} ms period, which leaves less than "
                       "the shortest inference ({:.3f} ms at the maximum clock): periods run over and the planner runs "
                       "at the maximum clock; lengthen --period-ms or use a faster meter (--meter)".format(
                           reserve_ms, period_ms, self.shortest_ms()))
        self.period_ms = max(period_ms - reserve_ms, ROUNDING_MS)
        self.deadline_ms = min(deadline_ms if deadline_ms is not None else period_ms, self.period_ms)
        self._reach()
        if self.mode == "worst-case":
            self._pin(self.worst_case_khz)

    def _set_future(self, solved: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None) -> None:
        """H (see module doc) discounted once more for being one inference ahead, the first plan's expected
        energies (``solved``: as _solve_future returned them), and what parking costs; plans made with the
        old ones are dropped."""
        n = len(self.opps)
        first: Optional[np.ndarray] = None
        if self._typical is not None and (solved is not None or self._seen or not self.period_ms):
            future, first, self._first_need_ms = solved if solved is not None else self._solve_future()
            back = np.zeros(n)
        elif self._typical is not None:
            # Nothing seen yet, with a period: inferences begin where --dvfs worst-case pins, until the outcomes
            # show beyond doubt that another point saves (_saves_for_sure)
            wc = self._col[self.worst_case_khz()]
            future, back = GAMMA * np.where(np.arange(n) == wc, 0.0, self.busy[wc] * self.trans_ms), np.zeros(n)
        else:
            future, back = np.zeros(n), self.busy * self.trans_ms  # the next inference wants f back
        self._first_uj = first
        self._set_parking(future + self._stuck_uj(), back)

    def _stuck_uj(self) -> np.ndarray:
        """MISS_UJ at each point an idle gap must not end at: those from which the next inference's first plan
        has no candidate meeting the deadline, where some point has one; where none has (a deadline below the
        worst case at f_max), those that need a transition to do their best. Parked at the lowest clock, the
        transition back pushed paths that meet the deadline from f_max past it. H, once solved, prices this
        in itself (its stuck rows), but not the guesses before it."""
        n = len(self.opps)
        if self.deadline_ms is None or not self.period_ms:
            return np.zeros(n)
        work, hold = self._work_ms(0, self._typical_e if self._typical is not None else self._plan_exit(0, -1))
        need = work + hold  # staying at the point; moving adds a transition
        best = np.minimum(need, self.trans_ms + need.min())
        fits = best <= self.deadline_ms
        bad = ~fits if fits.any() else best > need.min() + ROUNDING_MS
        return np.where(bad, MISS_UJ, 0.0)

    def _set_parking(self, future: np.ndarray, back: np.ndarray) -> None:
        """What the idle gap costs per point, from GAMMA * H (``future``) and the way back there (``back``)."""
        self._plans.clear()
        self._first_ranked: Dict[Optional[int], List[Tuple[float, float, int]]] = {}
        move = (self.busy - self.idle) * self.trans_ms + future  # parking at k: this + idle_mw(k) * gap
        self._future_uj, self._back_uj, self._move_uj = future.tolist(), back.tolist(), move.tolist()
        self._idle_mw = self.idle.tolist()
        self._idle_min_mw = float(self.idle.min())
        # A(f) - idle_mw_min * gap is at least this (stay: H; move: its transition and H): _Plan.bound_uj
        self._after_min_uj = min(min(self._future_uj), min(self._move_uj) + min(self._back_uj))
        self._park_x, self._park_k = self._park_envelope(move)

    def _tables(self, rt: Runtime) -> None:
        """ms per segment at every operating point, and suffix sums for remaining-work queries."""
        opps = self.opps
        self.block_ms = np.array([[self.cost.segment_ms(b.spec.label, f) for f in opps] for b in rt.blocks])
        # Heads the policy never evaluates (exits calibration disabled) cost nothing, in the work or the reserve.
        self.head_ms = np.array([[self.cost.segment_ms(h.spec.label, f) if self.policy.may_evaluate(e) else 0.0 for f in opps]
                                 for e, h in enumerate(rt.exits)])
        self.exit_blocks = list(rt.exit_blocks)
        self._typical_e = self._plan_exit(0, int(self._typical)) if self._typical is not None else -1  # first plans
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
        return _shortest(self.block_ms[:, -1], self.head_ms[:, -1], self.exit_blocks, self.policy)

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

    def _plan_exit(self, next_block: int, forecast: int) -> int:
        """The exit to plan for: ``forecast`` (-1: none yet, the first exit), or the next one a sample can
        stop at when it is behind us or disabled."""
        e = forecast if forecast >= 0 else 0
        last = len(self.exit_blocks) - 1
        while e < last and (self.exit_blocks[e] < next_block or not self.policy.may_evaluate(e)):
            e += 1
        return e

    def choose(self, next_block: int, forecast: int, elapsed_ms: float) -> int:
        """Operating point for the work from ``next_block`` up to exit ``forecast`` (-1: the first exit,
        no forecast yet), given ``elapsed_ms`` of the inference so far."""
        e = self._plan_exit(next_block, forecast)
        self._plan_block = self.exit_blocks[e]
        if next_block == 0 and self._first_uj is not None and e == self._typical_e:
            return self._first_choice(elapsed_ms)  # an inference's first plan: weighed with all that may follow
        return self._decide(self._cached_plan(next_block, e), elapsed_ms)

    def _decide(self, plan: _Plan, elapsed_ms: float) -> int:
        """The least-energy candidate of ``plan`` that meets the deadline (f_max if none does)."""
        bounds, needs, cols, busy_ms, busy_uj = plan
        left_ms = self.deadline_ms - elapsed_ms if self.deadline_ms is not None else float("inf")
        # Candidates come in ascending lower bound: once the bound reaches the best energy found, no later one
        # can beat it (usually the first that fits; without a period the bound is the energy itself).
        offset_uj = self._idle_min_mw * max(self.period_ms - elapsed_ms, 0.0) if self.period_ms else 0.0
        best_c, best_uj = -1, float("inf")
        for i, bound_uj in enumerate(bounds):
            if bound_uj + offset_uj >= best_uj:
                break
            if needs[i] <= left_ms:
                energy = self._energy_uj(cols[i], busy_ms[i], busy_uj[i], elapsed_ms)
                if energy < best_uj:
                    best_c, best_uj = cols[i], energy
        return self.opps[best_c] if best_c >= 0 else self.f_max

    def _first_choice(self, elapsed_ms: float) -> int:
        """The first plan's point: the least expected energy (computed at no elapsed time, as a first plan
        is made) among those that meet the deadline."""
        assert self._first_uj is not None
        j = self._col.get(self.current)
        ranked = self._first_ranked.get(j)
        if ranked is None:
            v = [0 if c == j else 1 for c in range(len(self.opps))]
            ranked = self._first_ranked[j] = sorted(
                (float(self._first_uj[v[c], c]), float(self._first_need_ms[v[c], c]), f) for c, f in enumerate(self.opps))
        left_ms = self.deadline_ms - elapsed_ms if self.deadline_ms is not None else float("inf")
        return next((f for energy, need, f in ranked if need <= left_ms and energy < np.inf), self.f_max)

    def _cached_plan(self, next_block: int, e: int) -> _Plan:
        key = (next_block, e, self.current)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(next_block, e)
            if len(self._plans) > RANK_CACHE_ENTRIES:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def _plan(self, next_block: int, e: int, steady: bool = False, from_khz: Optional[int] = None) -> _Plan:
        """The candidates for the work from ``next_block`` to exit ``e``, from ``from_khz`` (default: the
        current point; ``steady``: as if already at each, no transition charged)."""
        work, hold = self._work_ms(next_block, e)
        start = self.current if from_khz is None else from_khz
        tr = np.zeros(len(self.opps)) if steady else np.where(self._khz == start, 0.0, self.trans_ms)
        busy_ms = tr + work
        busy_uj = self.busy * busy_ms
        if self.period_ms:  # every idle gap costs at least the least idle power, and H >= 0
            bound = busy_uj - self._idle_min_mw * busy_ms + self._after_min_uj
        else:
            bound = busy_uj + np.asarray(self._future_uj)
        order = np.lexsort((busy_ms + hold, bound))  # ties: the one that needs less time first
        return _Plan(*(a[order].tolist() for a in (bound, busy_ms + hold, np.arange(len(self.opps)), busy_ms, busy_uj)))

    def _work_ms(self, next_block: int, e: int) -> Tuple[np.ndarray, np.ndarray]:
        """(forecast work, time held beyond it for the deadline test), per point."""
        b = self.exit_blocks[e]
        rb, rh = self.rest_blocks, self.rest_heads
        work = rb[next_block] - rb[b + 1] + self.head_ms[e]
        # A policy may evaluate heads before the forecast one (a cheaper expected cost first) with no replan
        # in between, so the deadline test counts them at the planned point; they are not forecast work, so
        # energy does not.
        first_head = self.next_exit[next_block] if self.policy.heads_before_forecast else e + 1
        before = rh[first_head] - rh[e] if first_head < e else np.zeros(len(self.opps))
        # The worst case past the forecast: finished at the planned point itself, or at f_max after a switch.
        rest = rb[b + 1] + rh[e + 1]
        return work, before + np.minimum(rest, rest[-1] + self.trans_ms) + ROUNDING_MS

    def _energy_uj(self, c: int, busy_ms: float, busy_uj: float, elapsed_ms: float) -> float:
        """E(f) at column ``c``, busy for ``busy_ms`` at ``busy_uj``: then the idle gap to the period's end,
        parked where it pays, and the future from there (A(f)); without a period, the future from f."""
        if not self.period_ms:
            return busy_uj + self._future_uj[c]
        gap_ms = max(self.period_ms - elapsed_ms - busy_ms, 0.0)
        after = self._idle_mw[c] * gap_ms + self._future_uj[c]  # staying at f
        if gap_ms > self.trans_ms:
            after = min(after, self._parked_uj(gap_ms)[0] + self._back_uj[c])
        return busy_uj + after

    def _parked_uj(self, gap_ms: float) -> Tuple[float, int]:
        """The least (energy, point) of moving for an idle gap of ``gap_ms``: the transition, idle at the
        point k for the rest of the gap, and the future from k."""
        k = self._park_k[bisect.bisect_right(self._park_x, gap_ms) - 1]
        return self._move_uj[k] + self._idle_mw[k] * gap_ms, k

    def _park_envelope(self, move_uj: np.ndarray) -> Tuple[List[float], List[int]]:
        """The lower envelope of the lines move_uj[k] + idle_mw(k) * gap over gaps from the transition to
        the period: (where each piece starts, its point k), so that _parked_uj is one bisection."""
        lo, hi = self.trans_ms, max(self.period_ms or 0.0, self.trans_ms)
        a, s = move_uj, self.idle
        with np.errstate(divide="ignore", invalid="ignore"):
            cross = (a[None, :] - a[:, None]) / (s[:, None] - s[None, :])  # where lines i and j meet
        edges = np.unique(np.concatenate(([lo, hi], cross[np.isfinite(cross) & (cross > lo) & (cross < hi)])))
        mids = np.concatenate((edges[:1], (edges[:-1] + edges[1:]) / 2.0))
        lines = np.argmin(a[None, :] + s[None, :] * mids[:, None], axis=1).tolist()
        xs, ks = [float("-inf")], [lines[0]]
        for x, k in zip(edges[:-1].tolist(), lines[1:]):
            if k != ks[-1]:
                xs.append(x)
                ks.append(k)
        return xs, ks

    def _rank(self, next_block: int, e: int, elapsed_ms: float, steady: bool = False) -> List[Any]:
        """Candidates (energy, time needed including the reserve, kHz), least energy first, for exit ``e``
        as given: what choose() weighs at a re-plan, for inspection."""
        _, needs, cols, busy_ms, busy_uj = self._plan(next_block, e, steady)
        return sorted((self._energy_uj(c, busy_ms[i], busy_uj[i], elapsed_ms), needs[i], self.opps[c])
                      for i, c in enumerate(cols))

    # -- the future: H per starting point, from the outcomes seen ---------------------------------------
    def _solve_future(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Policy iteration over where each inference starts and where it parks (see module doc). Returns
        GAMMA * H (least 0), and per variant v (0: from f itself, 1: after a transition to f) and point f the
        expected energy of a first plan at f with all that follows (inf where it does not meet the
        deadline) and its time needed for the deadline test."""
        n, cols = len(self.opps), np.arange(len(self.opps))
        work0, hold0 = self._work_ms(0, self._typical_e)
        need = np.array([0.0, self.trans_ms])[:, None] + (work0 + hold0)[None, :]  # [v, f]
        fits = need <= (self.deadline_ms if self.deadline_ms is not None else np.inf)
        replay = self._replay = self._replay_outcomes()
        prob = replay.prob[:, None, None]
        variant = (cols[:, None] != cols[None, :]).astype(int)  # [j, f]: 1 where starting at j means moving to f
        future, chosen, first = np.zeros(n), None, np.zeros((2, n))
        for _ in range(50):  # converges in a handful of steps; the bound only guards against float ties
            after, nxt = self._after_uj(replay, future)  # [outcome, v, f1]
            first = (prob * (replay.busy_uj + after)).sum(axis=0)
            own = (prob * (replay.busy_uj + after - future[nxt])).sum(axis=0)
            q = np.where(fits[variant, cols], first[variant, cols], np.inf)  # [j, f]
            stuck = ~np.isfinite(q).any(axis=1)  # no first plan fits from j: f_max runs, and misses
            q[stuck, -1] = first[variant[stuck, -1], -1] + MISS_UJ
            act = np.argmin(q, axis=1)
            if chosen is not None and np.array_equal(act, chosen[0]) and np.array_equal(nxt, chosen[1]):
                break
            chosen = (act, nxt)
            v = variant[cols, act]
            moves = np.zeros((n, n))  # [j, k]: where the next inference starts
            for o in range(len(replay.prob)):
                np.add.at(moves, (cols, nxt[o, v, act]), replay.prob[o])
            values = np.linalg.solve(np.eye(n) - GAMMA * moves, own[v, act] + np.where(stuck, MISS_UJ, 0.0))
            future = GAMMA * (values - values.min())
        return future, np.where(fits, first, np.inf), need

    def _outcome_probs(self) -> List[Tuple[float, Outcome]]:
        """The commonest outcomes seen, with their frequency; before any (no period: see _set_future), the
        typical work as forecast, with no re-plan."""
        self._outcomes.update(self._pending)
        self._pending.clear()
        common = self._outcomes.most_common(MAX_OUTCOMES)
        if not common:
            e = self._typical_e
            return [(1.0, tuple(range(self.exit_blocks[e] + 1)) + (-1 - e,))]
        total = sum(k for _, k in common)
        return [(k / total, o) for o, k in common]

    def _replay_outcomes(self) -> _Replay:
        """Every outcome seen, replayed from a first plan at each point f1, the re-plans deciding as
        choose() does (with the H in force): its busy energy, when it ends and at which point."""
        n = len(self.opps)
        tr = np.array([0.0, self.trans_ms])
        plans: Dict[Tuple[int, int, int], _Plan] = {}  # re-plans met, shared by the outcomes
        probs, busy, end, at = [], [], [], []
        for p, outcome in self._outcome_probs():
            col = np.tile(np.arange(n), (2, 1))  # [v, f1]
            t_ms = np.repeat(tr[:, None], n, axis=1)
            uj = self.busy[col] * t_ms
            for event in outcome:
                if isinstance(event, tuple):  # a re-plan before block event[0], forecast event[1]
                    e = self._plan_exit(event[0], event[1])
                    new = np.array([[self._col[self._decide(self._plan_from(plans, event[0], e, int(c)), float(t))]
                                     for c, t in zip(col[v], t_ms[v])] for v in range(2)])
                    moved = (new != col) * self.trans_ms
                    t_ms, uj, col = t_ms + moved, uj + self.busy[new] * moved, new
                else:
                    ms = (self.block_ms[event] if event >= 0 else self.head_ms[-1 - event])[col]
                    t_ms, uj = t_ms + ms, uj + self.busy[col] * ms
            if self.deadline_ms is not None:
                uj = uj + MISS_UJ * (t_ms > self.deadline_ms + ROUNDING_MS)
            probs.append(p)
            busy.append(uj)
            end.append(t_ms)
            at.append(col)
        return _Replay(np.asarray(probs), np.asarray(busy), np.asarray(end), np.asarray(at))

    def _plan_from(self, plans: Dict[Tuple[int, int, int], _Plan], next_block: int, e: int, c: int) -> _Plan:
        key = (next_block, e, c)
        if key not in plans:
            plans[key] = self._plan(next_block, e, from_khz=self.opps[c])
        return plans[key]

    def _after_uj(self, replay: _Replay, future: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Per replayed inference, the least energy of what follows it, staying or parked for the idle gap,
        with the future from there (``future`` = GAMMA * H), and the point the next inference starts at."""
        at = replay.end_col
        if not self.period_ms:  # back to back: the next inference starts where this one ended
            return future[at], at
        gap = np.maximum(self.period_ms - replay.end_ms, 0.0)
        stay = self.idle[at] * gap + future[at]
        line = (self.busy - self.idle) * self.trans_ms + future  # parking at k: + idle_mw(k) * gap
        xs, ks = self._park_envelope(line)
        k = np.asarray(ks)[np.searchsorted(xs, gap, side="right") - 1]  # the best k for each gap
        moved = np.where(gap > self.trans_ms, line[k] + self.idle[k] * gap, np.inf)
        return np.minimum(stay, moved), np.where(stay <= moved, at, k)

    def _start_khz(self) -> int:
        """The point H is least at: where inferences are best begun."""
        return self.opps[int(np.argmin(self._future_uj))]

    def _park_khz(self, gap_ms: float) -> int:
        """Where to spend an idle gap of ``gap_ms`` before the next inference (see module doc): the point
        whose transition, idle power and future cost least, staying included."""
        if gap_ms <= self.trans_ms:
            return self.requested_khz  # no time for a transition
        move_uj, k = self._parked_uj(gap_ms)
        c = self._col.get(self.current)
        if c is not None and self._idle_mw[c] * gap_ms + self._future_uj[c] <= move_uj + self._back_uj[c]:
            return self.requested_khz
        return self.opps[k]

    # -- learning how inferences go ---------------------------------------------------------------------
    def _learn(self, outcome: Outcome) -> None:
        """Count how this inference went; now and then (LEARN_AFTER) solve H again with the counts."""
        self._pending.append(outcome)
        self._seen += 1
        seen = self._seen
        if seen not in LEARN_AFTER and seen % LEARN_EVERY:
            return
        solved = self._solve_future()
        old, new = int(np.argmin(self._future_uj)), int(np.argmin(solved[0]))
        taken = new == old or self._saves_for_sure(old, new, seen)
        if taken:
            self._set_future(solved)
        self.solves.append((seen, taken and new != old))

    def _saves_for_sure(self, old: int, new: int, seen: int) -> bool:
        """Whether beginning inferences at point ``new`` rather than ``old`` (each time, coming back there after
        a re-plan) saves energy beyond doubt: the mean saving over the outcomes seen, less its 97.5%
        confidence margin (Student's t), pays for the move spread over the discount horizon. A start point
        chosen on a few samples may flip on the next few, and every flip costs a transition."""
        replay = self._replay
        assert replay is not None
        saved = self._home_uj(replay, old) - self._home_uj(replay, new)  # [outcome]
        mean = float(replay.prob @ saved)
        spread = float(replay.prob @ (saved - mean) ** 2) / max(seen - 1, 1)
        switch_uj = (1.0 - GAMMA) * self.busy[new] * self.trans_ms  # the move, spread over the horizon
        return bool(mean - _t_975(seen - 1) * spread ** 0.5 > switch_uj)

    def _home_uj(self, replay: _Replay, c: int) -> np.ndarray:
        """Per outcome, the energy of an inference begun at point ``c`` (from c) that goes back there after."""
        at, busy_uj = replay.end_col[:, 0, c], replay.busy_uj[:, 0, c]
        back_uj = np.where(at != c, self.busy[c] * self.trans_ms, 0.0)
        if not self.period_ms:
            return busy_uj + back_uj
        gap = np.maximum(self.period_ms - replay.end_ms[:, 0, c], 0.0)
        return busy_uj + back_uj + self.idle[c] * (gap - np.where(at != c, self.trans_ms, 0.0))

    # -- writing ----------------------------------------------------------------------------------------
    def _apply(self, f: int) -> bool:
        """Request ``f`` unless it is the point last requested; False when the kernel did not honour it (the
        reachable points were rebuilt: plan again)."""
        if f == self.requested_khz and self._owns_clock:
            return True  # never touch sysfs for nothing, nor again for a point already asked for
        if self._set is None or (self.mode == "governor" and self.emulate_governor):
            self.requested_khz = self.current = int(f)
            return True
        seen = len(self._not_honoured()) if self._not_honoured is not None else 0
        ran = int(self._set(f))
        self.writes += 1
        self._owns_clock = True
        self.requested_khz, self.current = int(f), ran
        return self._honoured(int(f), ran, seen)

    def _honoured(self, f: int, ran: int, seen: int) -> bool:
        """Check a write's answer; a cap (or floor) it reveals narrows the reachable points."""
        if self._not_honoured is None:
            ran_khz = [ran]
        else:
            ran_khz = [e.effective for e in self._not_honoured()[seen:] if getattr(e, "unit", "khz") == "khz"]
            if not ran_khz and snap_to_table(self.table_khz, ran) != f:
                # No write reached the kernel (the thermal guard held a raise back): not asked, so asked again
                self.requested_khz = ran
                return True
        ran_khz = [snap_to_table(self.table_khz, k) for k in ran_khz]
        if all(k == f for k in ran_khz):
            return True
        if min(ran_khz) < f:
            self._cap_khz = min(self._cap_khz, min(ran_khz))
            self._cap_learnt = True
        if max(ran_khz) > f:
            self._floor_khz = max(self._floor_khz, max(ran_khz))
        self._reach(solve=False)  # mid-inference: plan over the points left now, solve the future after it
        return False

    def _pin(self, pick: Callable[[], int]) -> None:
        """Pin ``pick()`` before the run, and again if the kernel showed it cannot run that (over the points
        left, with the future solved for them: this is no inference's critical path)."""
        if not self._apply(pick()):
            self._settle()
            self._apply(pick())

    def _settle(self) -> None:
        """Solve the future now if a refused write left it pending."""
        if self._resolve:
            self._resolve = False
            self._set_future()

    # -- hooks ----------------------------------------------------------------------------------------
    def begin(self, state: SampleState) -> None:
        self._t0 = time.perf_counter()
        self._plan_ns = 0
        self._planned_for = -2
        self._ran = []
        if self.mode == "governor" and self.emulate_governor:
            self._apply(self._governor_khz())

    def before_segment(self, spec: SegmentSpec, state: SampleState) -> None:
        # Plan before block 0, before the first block after every new forecast, and before a block past the
        # planned one (a policy that runs on without a new forecast: its reserve may have counted on the
        # maximum clock, so the plan must be made again); heads never trigger it.
        if self.mode != "planned":
            return
        t = time.perf_counter_ns()  # the segment's bookkeeping counts as planning too
        if spec.kind == "block" and (state.planned_exit != self._planned_for or spec.index > self._plan_block):
            if self._planned_for != -2:
                self._ran.append((spec.index, state.planned_exit))
            self._planned_for = state.planned_exit
            if not self._apply(self.choose(spec.index, state.planned_exit, self._now_ms())):
                self._apply(self.choose(spec.index, state.planned_exit, self._now_ms()))  # over the points left
        if self._typical is not None:
            self._ran.append(spec.index if spec.kind == "block" else -1 - spec.index)
        self._plan_ns += time.perf_counter_ns() - t

    def end(self, result: InferenceResult, state: SampleState) -> None:
        t = time.perf_counter_ns()
        busy_ms = self._now_ms()
        # The load the governor sees: busy over the period, or all of it when inferences run back to back.
        self._util = min(1.0, busy_ms / self._given[1]) if self._given[1] else 1.0
        if self._read_reserve is not None:
            # Grows at once; shrinks only by more than a step, so read jitter does not re-plan every period.
            r = math.ceil(self._read_reserve() / RESERVE_STEP_MS) * RESERVE_STEP_MS
            if r > self.reserve_ms or r < self.reserve_ms - RESERVE_STEP_MS:
                self.set_reserve_ms(r)
        self._settle()
        if self._typical is not None:
            self._learn(tuple(self._ran))
        if self._elapsed is not None:  # a modelled clock: the run's time is its inferences and periods
            self._run_ms += max(busy_ms, self._given[1] or 0.0)
        else:
            self._run_ms = (time.perf_counter() - self._born) * 1e3
        if self._cap_learnt:
            self._cap_learnt = False
            shown = self._read_cap() if self._read_cap is not None else None
            # the highest point the kernel's cap lets run (a cap between two points runs the lower one)
            top = None if shown is None else max((f for f in self.table_khz if f <= shown), default=0)
            if top is None or top > self._cap_khz:  # not the kernel's cap: the firmware's, or unknown
                self._hidden_cap_khz = min(self._hidden_cap_khz, self._cap_khz)
                self._next_look_ms = self._run_ms + CAP_CHECK_MS  # just answered: not asked again at once
        if self._run_ms >= self._next_look_ms:
            if self.mode == "planned" and self._read_cap is not None:
                self._look_at_cap()
            elif self._read_floor is not None:
                self._next_look_ms = self._run_ms + CAP_CHECK_MS
                self._governor_floor_khz = int(self._read_floor() or 0)
        if self._between is not None and self.mode == "planned":
            self._between()  # before parking: the clock the inference ended at is the one re-pinned mid-inference
        if self.period_ms and self.mode == "planned":
            self._apply(self._park_khz(self.period_ms - busy_ms))
            self._settle()  # a park the kernel refused: still in idle time
        self.plan_ns.append(self._plan_ns + (time.perf_counter_ns() - t))

    def _look_at_cap(self) -> None:
        """Plan up to the kernel's cap as it reads now (a thermal cap that lifted or appeared), never past a
        hidden one, which is asked for again; in idle time, solving the future only when the reachable points
        change."""
        assert self._read_cap is not None
        self._next_look_ms = self._run_ms + CAP_CHECK_MS
        shown = self._read_cap()
        if shown is None:
            return
        top = max((f for f in self.table_khz if f <= shown), default=0)
        if self._hidden_cap_khz < top and self._set is not None and top != self.requested_khz:
            self._probe_hidden_cap(top)
        self._cap_khz = min(int(shown), self._hidden_cap_khz)
        if self._reachable() != self.opps:
            self._reach()
        self._settle()  # a refused ask left the future to solve: before parking, not in the next inference

    def _probe_hidden_cap(self, top: int) -> None:
        """A firmware cap cannot be seen lifting (a Pi whose throttling ended): ask for ``top``, the kernel's
        cap, once. Honoured, the hidden cap is gone; refused, the clock that ran is the hidden cap now. In idle
        time, and parking follows, so no inference runs on the probe's clock."""
        self._cap_khz = top  # the probe's answer alone decides the hidden cap
        if not self._apply(top):
            self._hidden_cap_khz, self._cap_learnt = self._cap_khz, False
            self._apply(self._cap_khz)  # requested again in step with what runs: a point the plans know
        elif snap_to_table(self.table_khz, self.current) == top:
            self._hidden_cap_khz = self.table_khz[-1]
        # else no write reached the kernel (the thermal guard held the raise back): nothing learnt

    def _governor_khz(self) -> int:
        """The point the emulated governor picks from the last period's load, within the policy's limits: the
        kernel clamps the governor's target to [scaling_min_freq, the cap] (an nvpmodel MIN_FREQ holds it up).
        Only LOAD_DRIVEN are modelled; every board's default governor is one of them."""
        opps = [f for f in self.opps if f >= self._governor_floor_khz] or [self.f_max]
        if self.governor == "ondemand":
            if self._util > ONDEMAND_UP_THRESHOLD:
                return self.f_max
            lo, hi = self.cpuinfo_khz
            target = lo + self._util * (hi - lo)
            return min(opps, key=lambda f: (abs(f - target), f))  # CPUFREQ_RELATION_C: the closest
        # schedutil: util measured at the clock that ran, so next = 1.25 * cur * util; RELATION_L
        target = SCHEDUTIL_HEADROOM * self.current * self._util
        return next((f for f in opps if f >= target), self.f_max)


def _t_975(dof: int) -> float:
    """Student's t at 97.5% (one-sided) for ``dof`` degrees of freedom: the tabulated value at the largest
    tabulated dof not above it, so never smaller than the true value (a conservative margin)."""
    table = ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365), (8, 2.306),
             (9, 2.262), (10, 2.228), (12, 2.179), (15, 2.131), (20, 2.086), (30, 2.042), (60, 2.000), (120, 1.980))
    return next((t for d, t in reversed(table) if dof >= d), table[0][1])


def overhead_summary(plan_ns: List[int], records: List[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """The planner's own host cost per inference (planning + controller bookkeeping, and the policy's
    forecasting as recorded in ``forecast_us``): what `run` and `bench` report beside block latency. A
    policy that times no forecasting (the oracle's lookup) has ``forecast_us_median`` None, not 0."""
    plan_us = np.asarray(plan_ns, dtype=np.float64) / 1e3
    out = {"planner_us_mean": float(plan_us.mean()), "planner_us_median": float(np.median(plan_us))}  # type: Dict[str, Optional[float]]
    if len(plan_us) == len(records):
        timed = any("forecast_us" in r for r in records)
        forecast_us = np.asarray([r.get("forecast_us", 0.0) for r in records], dtype=np.float64)
        out["forecast_us_median"] = float(np.median(forecast_us)) if timed else None
        out["overhead_us_median"] = float(np.median(plan_us + forecast_us))
    return out
