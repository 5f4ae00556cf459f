"""Predictive Exit: forecast the exit after the first one, evaluate only that head, re-predict on a miss.

After block 0 (more precisely, the block of the first exit) the first head runs. If it is confident
the sample exits there. Otherwise the forecaster gives a distribution p over later exits and the
policy jumps to the exit j minimizing the expected cost sum_t p_t * C[j, t], where C[j, t] is the MACs
of jumping to j when the sample's true exit is t (running blocks past t when j > t; an extra head and
another jump when j < t). Every intermediate head is skipped. At j the head must pass its threshold,
otherwise the policy re-predicts from j (``on_miss="repredict"``) or steps to the next exit
(``"step"``): an unconfident head is never accepted, except the final exit, which always is.
"""
from __future__ import annotations

from time import perf_counter_ns
from typing import Any, Dict, List, Optional

import numpy as np

from edgeexit.errors import CalibrationError
from edgeexit.forecaster import Forecaster, ForecastTable, head_features, pooled_features
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState


def jump_cost_matrix(macs_to_exit: List[int], head_macs: List[int], risk: float = 1.0) -> np.ndarray:
    """C[j, t]: MACs of predicting exit j for a sample whose right exit is t (first head excluded).

    Over-predicting (j > t) runs blocks the sample did not need; ``risk`` weighs that waste against
    the heads a jump saves. risk = inf never jumps past the next exit (classic early exit's cost);
    calibration picks the value that minimizes MACs on held-out data at the accuracy target.
    """
    n = len(macs_to_exit)
    c = np.zeros((n, n))
    for j in range(n):
        for t in range(n):
            if j >= t:
                waste = macs_to_exit[j] - macs_to_exit[t]
                c[j, t] = macs_to_exit[t] + head_macs[j] + (waste * risk if waste else 0.0)
            else:
                c[j, t] = macs_to_exit[t] + head_macs[j] + head_macs[t]
    return c


class PredictivePolicy(ExitPolicy):
    name = "predictive"
    forecasts = True

    def __init__(self, forecaster: Forecaster, thresholds: List[float], on_miss: str = "repredict", risk: float = 1.0,
                 table: Optional[ForecastTable] = None) -> None:
        if on_miss not in ("repredict", "step"):
            raise CalibrationError("on_miss must be 'repredict' or 'step', not {!r}".format(on_miss))
        self.forecaster = forecaster
        self.thresholds = [float(t) for t in thresholds]
        self.on_miss = on_miss
        self.risk = float(risk)
        self.table = table  # the forecaster distilled into a lookup table (used when present)
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
        table = ForecastTable.from_dict(entry["table"]) if entry.get("table") else None
        if table is not None and (len(table.planned) != n_exits or len(table.jump) != n_exits):
            raise CalibrationError("calibration.json: the forecast table was built for another bundle; run `edgeexit calibrate` again")
        return cls(fc, th, on_miss, float(entry.get("risk", 1.0)), table)

    def bind(self, runtime: Any) -> None:
        super().bind(runtime)
        n = len(runtime.exits)
        if self.forecaster.n_exits != n:
            raise CalibrationError("forecaster has {} exits, bundle {}; run `edgeexit calibrate`".format(self.forecaster.n_exits, n))
        self.n_exits = n
        self.cost = jump_cost_matrix(list(runtime.macs_to_exit), list(runtime.head_macs), self.risk)
        out = runtime.bundle.blocks[runtime.exit_blocks[0]].output
        self._feat_scale, self._feat_zp = float(out.scale), int(out.zero_point)

    def start(self, state: SampleState) -> None:
        self._target = 0
        self.forecast_ns = 0
        state.extra = None

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
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
            if state.extra is None:  # pooled once, from the first exit's block output
                state.extra = pooled_features(state.block_output, self._feat_scale, self._feat_zp).tolist()
            feats = feats + state.extra
        z = self.forecaster.logits(np.asarray(feats))[e + 1 :]
        # The most likely exit is the forecast the DVFS planner sizes the remaining work by; which head to
        # evaluate next is the expected-cost choice (never later than that forecast when risk is high).
        # Unnormalized probabilities suffice for both argmax and argmin. The floor (e^-20) keeps every exit
        # possible, so a high risk weight really means "never skip a head that might be the exit".
        state.planned_exit = e + 1 + int(np.argmax(z))
        expected = self.cost[e + 1 :, e + 1 :] @ np.exp(np.maximum(z - z.max(), -20.0))
        return e + 1 + int(np.argmin(expected))

    def decide(self, head: HeadView, state: SampleState) -> bool:
        e = head.exit_index
        if head.max_softmax() >= self.thresholds[e]:
            return True
        if self.on_miss == "step" and e != 0:
            target = e + 1
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
                "forecaster_params": self.forecaster.n_params}
