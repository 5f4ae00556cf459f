"""The oracle: knows each sample's earliest correct exit and runs only up to it. Benchmarks only:
it is the lower bound on MACs that any policy over these exits could reach at the full accuracy."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from edgeexit.policies.base import ExitPolicy, HeadView, SampleState


def earliest_correct(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per sample, the first exit whose prediction equals the label (the final exit if none is)."""
    ok = pred == y[:, None]
    ok[:, -1] = True
    return np.argmax(ok, axis=1)


class OraclePolicy(ExitPolicy):
    name = "oracle"
    forecasts = True  # a perfect forecast
    heads_before_forecast = False  # only the forecast head ever runs

    def __init__(self, targets: Sequence[int]) -> None:
        self.targets = [int(t) for t in targets]
        self._target = 0

    def start(self, state: SampleState) -> None:
        self._target = self.targets[state.index]
        state.planned_exit = self._target

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        return exit_index == self._target

    def decide(self, head: HeadView, state: SampleState) -> bool:
        return True
