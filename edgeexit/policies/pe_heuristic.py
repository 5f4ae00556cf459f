"""The Predictive Exit public code's parameter-free predictor (Swifter-Li/CNN-with-Early-Exit-and-DVFS).

No exit is checked before the start exit (the public code's start_layer, L0; calibrated here with
beta). Exit at exit l when the activation max|logit_l| exceeds beta * tau_l. Otherwise predict the jump by
smoothing the current logits with the kernel [1, 1, 1] (zero-padded neighbour sum) up to ``rounds``
times; the first round i whose max|v| exceeds beta * tau_{l+i} predicts a jump of i exits (``rounds``
if none). Intermediate heads are skipped; at the target the exit is checked again, and on a miss the
jump is predicted again from there. A target is clamped to the last intermediate exit (the code's
``if self.target_layer > self.exit_num``), which is checked before the final exit runs.

tau_l is the public code's: the absolute value of exit l's mean logit (utils_new.calculate_average_activations
averages the signed logits; set_activation_thresholds keeps abs() of each), here over the bundle's calibration
split. beta is calibrated for the accuracy target (the cheapest on a log grid; the code's CLI default is 6),
and so is the start exit (the code's default is layer 6 of 20). All are stored in calibration.json.
Calibration judges each beta by replaying this very policy, so what it reports is what the runtime does.
"""
from __future__ import annotations

from time import perf_counter_ns
from typing import Any, Dict, List

import numpy as np

from edgeexit.errors import CalibrationError
from edgeexit.jsonvalues import whole_number
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState


def tau_from_logits(logits: np.ndarray) -> List[float]:
    """Per exit, |mean logit| over samples and classes, as the public code has it; ``logits`` is (N, E, C)."""
    return np.abs(logits.astype(np.float64).mean(axis=(0, 2))).tolist()


class PEHeuristicPolicy(ExitPolicy):
    name = "pe-heuristic"
    forecasts = True

    def __init__(self, tau: List[float], beta: float, rounds: int = 8, start_exit: int = 0) -> None:
        self.tau = [float(t) for t in tau]
        self.beta = float(beta)
        self.rounds = int(rounds)
        self.start_exit = int(start_exit)  # the public code's start_layer: no exit is checked before it
        self._target = self.start_exit
        self.forecast_ns = 0  # host time spent predicting jumps for the current sample (the planner's overhead)

    @classmethod
    def from_calibration(cls, calibration: Dict[str, Any], n_exits: int) -> "PEHeuristicPolicy":
        entry = calibration.get("pe-heuristic")
        if not entry or len(entry.get("tau", [])) != n_exits:
            raise CalibrationError("the bundle has no pe-heuristic calibration; run `edgeexit calibrate --model PATH`")
        rounds, start = entry.get("rounds", 8), entry.get("start_exit", 0)
        try:  # int() would run 2.7 as 2 silently
            rounds, start = whole_number(rounds), whole_number(start)
        except ValueError:
            raise CalibrationError("calibration.json: pe-heuristic rounds and start_exit must be whole numbers, not {!r} "
                                   "and {!r}; run `edgeexit calibrate` again".format(rounds, start)) from None
        policy = cls(entry["tau"], entry["beta"], rounds, start)
        # Values that parse but mean nothing: beta or tau <= 0 passes every sample at its first check, and
        # rounds < 1 predicts no jump.
        # (NaN passes here, for make_policy's own line on non-finite values)
        if (policy.beta <= 0 or any(t <= 0 for t in policy.tau) or policy.rounds < 1
                or not 0 <= policy.start_exit < n_exits):
            raise CalibrationError("calibration.json: pe-heuristic needs beta > 0, every tau > 0, rounds >= 1 and a "
                                   "start_exit from 0 to {}; run `edgeexit calibrate` again".format(n_exits - 1))
        return policy

    def bind(self, runtime: Any) -> None:
        super().bind(runtime)
        self.last = len(runtime.exits) - 1
        self.limits = [self.beta * t for t in self.tau]

    def may_evaluate(self, exit_index: int) -> bool:
        return exit_index >= self.start_exit

    def start(self, state: SampleState) -> None:
        self._target = self.start_exit
        self.forecast_ns = 0

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        return exit_index == self._target

    def predict_jump(self, logits: np.ndarray, exit_index: int) -> int:
        v = logits.astype(np.float64)
        for i in range(1, self.rounds + 1):
            v = v + np.concatenate(([0.0], v[:-1])) + np.concatenate((v[1:], [0.0]))
            if exit_index + i >= self.last or np.abs(v).max() > self.limits[exit_index + i]:
                return i
        return self.rounds

    def decide(self, head: HeadView, state: SampleState) -> bool:
        e = head.exit_index
        z = head.logits()
        if float(np.abs(z).max()) > self.limits[e]:
            return True
        t0 = perf_counter_ns()
        # clamped to the last intermediate exit, as the public code clamps to exit_num; a miss there goes to the final
        self._target = self.last if e >= self.last - 1 else min(e + self.predict_jump(z, e), self.last - 1)
        self.forecast_ns += perf_counter_ns() - t0
        state.planned_exit = self._target
        return False

    def describe(self) -> dict:
        return {"policy": self.name, "beta": self.beta, "rounds": self.rounds, "start_exit": self.start_exit}
