"""Predictive Exit: forecast the exit after the first block, evaluate only that head, re-predict on a miss.

Right after the block of the first exit calibration kept (the first block when exit 0 is enabled, as
the design card reads the paper, which does not define it; a later one costs no extra work and shows
more of the sample), an entry forecaster
(when calibration found one that pays) reads cheap pooled features of that block's output and gives a
distribution p over all exits; the policy
jumps to the exit j minimizing the expected cost sum_t p_t * C[j, t], where C[j, t] is the MACs of
jumping to j when the sample's true exit is t (running blocks past t when j > t; an extra head and
another jump when j < t). At inference that MLP runs as the shallow tree calibration distilled from
it (:class:`~edgeexit.forecaster.EntryTree`, a few comparisons on channel sums), when the bundle has
one. Without an entry forecaster the first enabled head always runs. At every
evaluated head that is not confident, the head forecaster (features of that head) forecasts again
and the policy jumps on the same rule. Every head in between is skipped, and so is every head of an
exit calibration disabled. An evaluated head must pass its threshold, otherwise the policy
re-predicts from there (``on_miss="repredict"``) or steps to the next enabled exit (``"step"``): an
unconfident head is never accepted, except the final exit, which always is.
"""
from __future__ import annotations

from time import perf_counter_ns
from typing import Any, Dict, List, Optional

import numpy as np

from edgeexit.errors import CalibrationError, PolicyError
from edgeexit.forecaster import (HEAD_FEATURES, EntryTree, Forecaster, ForecastTable, channel_groups, group_means,
                                 head_features, pooled_features, pooled_width)
from edgeexit.jsonvalues import is_finite_number, is_number
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState


UNREACHABLE = 1e18  # cost of jumping to a disabled exit: never chosen while the final exit exists


def jump_cost_matrix(
    macs_to_exit: List[int], head_macs: List[int], risk: float = 1.0, enabled: Optional[List[bool]] = None
) -> np.ndarray:
    """C[j, t]: MACs of predicting exit j for a sample whose right exit is t (heads before j excluded).

    Over-predicting (j > t) runs blocks the sample did not need; ``risk`` weighs that waste against
    the heads a jump saves. risk = inf never jumps past the next exit (classic early exit's cost);
    calibration picks the value that minimizes MACs on held-out data at the accuracy target. Rows of
    exits not ``enabled`` are unreachable.
    """
    n = len(macs_to_exit)
    c = np.zeros((n, n))
    for j in range(n):
        for t in range(n):
            if enabled is not None and not enabled[j]:
                c[j, t] = UNREACHABLE
            elif j >= t:
                waste = macs_to_exit[j] - macs_to_exit[t]
                c[j, t] = macs_to_exit[t] + head_macs[j] + (waste * risk if waste else 0.0)
            else:
                c[j, t] = macs_to_exit[t] + head_macs[j] + head_macs[t]
    return c


def enabled_exits(thresholds: List[float]) -> List[bool]:
    """Exits whose max-softmax threshold can pass; the final exit always can."""
    return [t <= 1.0 or e == len(thresholds) - 1 for e, t in enumerate(thresholds)]


class PredictivePolicy(ExitPolicy):
    name = "predictive"
    forecasts = True

    def __init__(self, forecaster: Forecaster, thresholds: List[float], on_miss: str = "repredict", risk: float = 1.0,
                 table: Optional[ForecastTable] = None, entry: Optional[Forecaster] = None, entry_risk: float = 1.0,
                 entry_tree: Optional[EntryTree] = None, entry_exit: Optional[int] = None) -> None:
        if on_miss not in ("repredict", "step"):
            raise PolicyError("on_miss must be 'repredict' or 'step', not {!r}; pass one of them".format(on_miss))
        self.forecaster = forecaster
        self.thresholds = [float(t) for t in thresholds]
        self.on_miss = on_miss
        self.risk = float(risk)
        self.table = table  # the head forecaster distilled into a lookup table (used when present)
        self.entry = entry  # forecasts from the entry block's pooled output, before any head runs
        self.entry_risk = float(entry_risk)
        self.entry_tree = entry_tree if entry is not None else None  # the entry forecaster distilled (used when present)
        # The exit whose block's output both forecasters read: the entry forecast runs right after that block.
        self.entry_exit = 0 if entry_exit is None else int(entry_exit)
        self.entry_exit_recorded = entry_exit is not None  # None: calibrated before the entry could move past exit 0
        self._target = 0
        self.forecast_ns = 0  # host time spent forecasting for the current sample

    @classmethod
    def from_calibration(cls, calibration: Dict[str, Any], n_exits: int, on_miss: str = "repredict") -> "PredictivePolicy":
        entry = calibration.get("predictive")
        if not entry:
            raise CalibrationError("the bundle has no trained forecaster; run `edgeexit calibrate --model PATH`")
        fc = Forecaster.from_dict(entry.get("forecaster", {}))
        th = entry.get("thresholds")
        if fc.n_exits != n_exits or not isinstance(th, list) or len(th) != n_exits:
            raise CalibrationError("calibration.json: the forecaster was fitted for another bundle; run `edgeexit calibrate` again")
        if not all(is_number(t) for t in th):
            # a string fails with a TypeError at bind (make_policy refuses NaN and inf for every policy)
            raise CalibrationError("calibration.json: the predictive thresholds must be numbers; run `edgeexit calibrate` again")
        if not fc.use_block_features and fc.w1.shape[0] != HEAD_FEATURES:
            raise CalibrationError("calibration.json: the head forecaster takes {} features, not the {} of a head; run "
                                   "`edgeexit calibrate` again".format(fc.w1.shape[0], HEAD_FEATURES))
        risk, entry_risk = entry.get("risk", 1.0), entry.get("entry_risk")
        if not all(is_finite_number(r) and r >= 0 for r in (risk, 1.0 if entry_risk is None else entry_risk)):
            # a NaN weight makes every expected cost NaN, and argmin then jumps to the first exit (0: waste is free)
            raise CalibrationError("calibration.json: the predictive risk and entry_risk must be numbers >= 0, not {!r} and "
                                   "{!r}; run `edgeexit calibrate` again".format(risk, entry_risk))
        table = ForecastTable.from_dict(entry["table"], n_exits=n_exits) if entry.get("table") else None
        first = Forecaster.from_dict(entry["entry_forecaster"]) if entry.get("entry_forecaster") else None
        if first is not None and first.n_exits != n_exits:
            raise CalibrationError("calibration.json: the entry forecaster was fitted for another bundle; run `edgeexit calibrate` again")
        tree = None
        if first is not None and entry.get("entry_tree"):
            tree = EntryTree.from_dict(entry["entry_tree"], n_features=first.w1.shape[0], n_exits=n_exits)
        entry_exit = entry.get("entry_exit")  # absent: calibrated before the entry could move past exit 0
        if entry_exit is not None and (isinstance(entry_exit, bool) or not isinstance(entry_exit, int)
                                       or not 0 <= entry_exit < n_exits):
            raise CalibrationError("calibration.json: the predictive entry_exit {!r} is not an exit of this bundle; run "
                                   "`edgeexit calibrate` again".format(entry_exit))
        return cls(fc, th, on_miss, float(risk), table, first, float(1.0 if entry_risk is None else entry_risk), tree,
                   entry_exit)

    def bind(self, runtime: Any) -> None:
        super().bind(runtime)
        n = len(runtime.exits)
        if self.forecaster.n_exits != n:
            raise CalibrationError("forecaster has {} exits, bundle {}; run `edgeexit calibrate`".format(self.forecaster.n_exits, n))
        self.n_exits = n
        self.enabled = enabled_exits(self.thresholds)
        self.first = self.enabled.index(True)
        if self.entry_exit > self.first or (self.entry_exit_recorded and self.entry_exit != self.first):
            # calibration writes the first enabled exit: another one makes the forecasters read a block they were
            # not fitted on (a shape check passes wherever two blocks have as many channels)
            raise CalibrationError("the predictive forecasters read exit {}'s block, not that of exit {}, the first one "
                                   "enabled; run `edgeexit calibrate` again".format(self.entry_exit, self.first))
        self._check_targets()
        self._next_enabled = [next(j for j in range(e + 1, n) if self.enabled[j]) if e < n - 1 else e for e in range(n)]
        # Additive logit mask (disabled exits are never forecast) and the matching probability weights.
        self._mask = np.where(self.enabled, 0.0, -1e9)
        self._weight = np.asarray(self.enabled, dtype=np.float64)
        macs, heads = list(runtime.macs_to_exit), list(runtime.head_macs)
        self.cost = jump_cost_matrix(macs, heads, self.risk, self.enabled)
        self.entry_cost = jump_cost_matrix(macs, heads, self.entry_risk, self.enabled)
        block = runtime.exit_blocks[self.entry_exit]
        out = runtime.bundle.blocks[block].output
        self._feat_scale, self._feat_zp = float(out.scale), int(out.zero_point)
        # The head MLP (no table) reads the pooled block features: pooled once, at the entry exit's block.
        self._pool = self.table is None and self.forecaster.use_block_features
        self.feature_block = block if (self._pool or self.entry is not None) else None
        channels = int(out.shape[-1])
        for fc, extra in ((self.entry, 0), (self.forecaster if self._pool else None, HEAD_FEATURES)):
            if fc is not None and fc.w1.shape[0] != pooled_width(channels) + extra:
                raise CalibrationError("the predictive forecasters were fitted on another block's features than block {}'s "
                                       "{} channels; run `edgeexit calibrate` again".format(block, channels))
        positions = int(np.prod(out.shape)) // int(out.shape[-1])
        self._groups, self._to_groups = channel_groups(channels), group_means(channels)
        self.typical_exit = None
        if self.entry_tree is not None:
            self.typical_exit = self.entry_tree.planned[0]
            # The tree compares raw int8 channel (or channel-group) sums: pooling and dequantization folded
            # into its thresholds.
            self._ones = np.ones(positions, dtype=np.float32)
            sizes = None if self._groups is None else self._groups.sum(axis=0)
            self._tree_on_sums = self.entry_tree.on_sums(positions, self._feat_scale, self._feat_zp, sizes)
        elif self.entry is not None:
            self._bind_entry(positions)

    def _check_targets(self) -> None:
        """The distilled table and tree may only name enabled exits: a disabled one would be evaluated all the same
        (its head run, the planner reserving no time for it), and a tree jump before the entry exit is never reached
        (every head skipped, each sample run to the final exit). Only a hand-edited or half-refreshed calibration
        has them."""
        names = []  # type: List[Any]
        if self.table is not None:
            for e in range(self.n_exits - 1):  # the final exit's row is never looked up
                if self.enabled[e]:
                    names += [("forecast table", v) for v in self.table.planned[e] + self.table.jump[e]]
        if self.entry_tree is not None:
            leaves = [i for i, f in enumerate(self.entry_tree.feature) if f < 0]
            names += [("entry tree", v) for i in leaves for v in (self.entry_tree.planned[i], self.entry_tree.jump[i])]
        for where, v in names:
            if not self.enabled[v] or v < self.first:
                raise CalibrationError("calibration.json: the predictive {} names exit {}, which its thresholds disable; run "
                                       "`edgeexit calibrate` again".format(where, v))

    def _bind_entry(self, positions: int) -> None:
        """Fold everything constant of the entry forecast into its weights, once: the pooling weights, the
        output's zero point (into the first bias), the disabled-exit mask (into the last bias) and the
        enabled weights (into the cost matrix). Per sample it is then one cast, one pooling product, the
        two layers and the expected-cost product: the forecast sits on every inference's critical path."""
        w1, b1, w2, b2 = self.entry.folded()
        if self._to_groups is not None:  # group means are linear in the channel means: fold them into the first layer
            w1 = self._to_groups @ w1
        self._entry_pool = np.full(positions, self._feat_scale / positions, dtype=np.float32)
        self._entry_w1, self._entry_w2 = w1, w2
        self._entry_b1 = b1 - (self._feat_zp * self._feat_scale) * w1.sum(axis=0)
        self._entry_b2 = b2 + self._mask
        self._entry_cost_w = self.entry_cost * self._weight[None, :]

    def may_evaluate(self, exit_index: int) -> bool:
        return self.enabled[exit_index]

    def start(self, state: SampleState) -> None:
        self._target = self.first
        self.forecast_ns = 0
        state.extra = None
        if self.typical_exit is not None:
            # Before the entry forecast the planner sizes the work by the commonest forecast (the tree's
            # root), not by the first exit: the blocks up to the entry then run at a typical clock.
            state.planned_exit = self.typical_exit

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        if exit_index == self.entry_exit and self.feature_block is not None:
            t = perf_counter_ns()
            out = state.block_output
            if self._pool:
                state.extra = pooled_features(out, self._feat_scale, self._feat_zp).tolist()
            if self.entry_tree is not None:
                tree = self._tree_on_sums
                sums = self._ones @ out.reshape(self._ones.shape[0], -1).astype(np.float32)
                leaf = tree.leaf((sums if self._groups is None else sums @ self._groups).tolist())
                state.planned_exit, self._target = tree.planned[leaf], tree.jump[leaf]
            elif self.entry is not None:
                x = self._entry_pool @ out.reshape(self._entry_pool.shape[0], -1).astype(np.float32)
                z = np.maximum(x @ self._entry_w1 + self._entry_b1, 0.0) @ self._entry_w2 + self._entry_b2
                state.planned_exit = int(z.argmax())
                self._target = int((self._entry_cost_w @ np.exp(np.maximum(z - z.max(), -20.0))).argmin())
            if self.entry_tree is not None or self.entry is not None:
                # The forecast (most likely exit) and the jump (least expected cost) are chosen apart; the
                # planner must never size the work short of the head that will run, as decide() ensures too.
                if state.planned_exit < self._target:
                    state.planned_exit = self._target
            self.forecast_ns += perf_counter_ns() - t
        return exit_index == self._target

    def forecast(self, head: HeadView, state: SampleState) -> int:
        """The exit to jump to from ``head`` (always later than it); sets ``state.planned_exit``."""
        e = head.exit_index
        if self.table is not None:
            planned, jump = self.table.lookup(e, head.max_softmax())
            state.planned_exit = planned
            return jump
        feats = head_features(head, self.n_exits)
        if self.forecaster.use_block_features:
            feats = feats + state.extra
        z = (self.forecaster.logits(np.asarray(feats)) + self._mask)[e + 1 :]
        # The most likely exit is the forecast the DVFS planner sizes the remaining work by; which head to
        # evaluate next is the expected-cost choice (never later than that forecast when risk is high).
        # Unnormalized probabilities suffice for both argmax and argmin. The floor (e^-20) keeps every exit
        # possible, so a high risk weight really means "never skip a head that might be the exit".
        state.planned_exit = e + 1 + int(np.argmax(z))
        expected = self.cost[e + 1 :, e + 1 :] @ (np.exp(np.maximum(z - z.max(), -20.0)) * self._weight[e + 1 :])
        return e + 1 + int(np.argmin(expected))

    def decide(self, head: HeadView, state: SampleState) -> bool:
        e = head.exit_index
        if head.max_softmax() >= self.thresholds[e]:
            return True
        if self.on_miss == "step" and (self.entry is not None or len(state.heads) > 1):  # after the first forecast
            target = self._next_enabled[e]
        else:
            t = perf_counter_ns()
            target = self.forecast(head, state)
            self.forecast_ns += perf_counter_ns() - t
        self._target = target
        if state.planned_exit < target:
            state.planned_exit = target
        return False

    def describe(self) -> dict:
        return {"policy": self.name, "on_miss": self.on_miss, "risk": self.risk, "thresholds": self.thresholds,
                "forecast": "lookup table" if self.table is not None else "MLP",
                "entry_forecast": None if self.entry is None else "tree" if self.entry_tree is not None else "MLP",
                "entry_risk": self.entry_risk if self.entry is not None else None,
                "entry_exit": self.entry_exit if self.feature_block is not None else None,
                "forecaster_params": self.forecaster.n_params + (self.entry.n_params if self.entry is not None else 0)}
