"""``full`` (final exit only) and ``threshold`` (classic early exit: every head in order)."""
from __future__ import annotations

from typing import Any, Dict, List

from edgeexit.errors import CalibrationError
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState


class FullPolicy(ExitPolicy):
    """Run every block and only the final exit head."""

    name = "full"

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        return False  # the runtime always evaluates the final head

    def decide(self, head: HeadView, state: SampleState) -> bool:
        return True


#: the confidence metrics a threshold can compare (`edgeexit calibrate --metric`)
METRICS = ("max_softmax", "entropy")


class ThresholdPolicy(ExitPolicy):
    """Classic early exit (BranchyNet/SDN): evaluate each head in order, exit at the first whose
    max-softmax reaches its threshold (or whose normalized entropy falls to it). Heads of exits that
    calibration disabled (a threshold no head can reach) are skipped, as any sane deployment would."""

    name = "threshold"

    def __init__(self, thresholds: List[float], metric: str = "max_softmax") -> None:
        if metric not in METRICS:
            raise CalibrationError("unknown confidence metric '{}'; use max_softmax or entropy".format(metric))
        self.thresholds = [float(t) for t in thresholds]
        self.metric = metric

    @classmethod
    def from_calibration(cls, calibration: Dict[str, Any], n_exits: int) -> "ThresholdPolicy":
        entry = calibration.get("threshold")
        if not entry:
            raise CalibrationError("the bundle has no threshold calibration; run `edgeexit calibrate --model PATH`")
        th = entry.get("thresholds")
        if not isinstance(th, list) or len(th) != n_exits:
            raise CalibrationError(
                "calibration.json: threshold.thresholds must list {} values; run `edgeexit calibrate` again".format(n_exits)
            )
        metric = entry.get("metric", "max_softmax")
        if metric not in METRICS:  # `calibrate --metric` writes it: the fix is there
            raise CalibrationError("calibration.json: threshold.metric {!r} is neither max_softmax nor entropy; run "
                                   "`edgeexit calibrate` again".format(metric))
        return cls(th, metric)

    def bind(self, runtime: Any) -> None:
        super().bind(runtime)
        if len(self.thresholds) != len(runtime.exits):
            raise CalibrationError(
                "{} thresholds for {} exits; run `edgeexit calibrate` for this bundle".format(len(self.thresholds), len(runtime.exits))
            )

    def may_evaluate(self, exit_index: int) -> bool:
        # A head whose threshold can never pass (calibration disabled that exit) is not worth running.
        t = self.thresholds[exit_index]
        return t <= 1.0 if self.metric == "max_softmax" else t >= 0.0

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        return self.may_evaluate(exit_index)

    def decide(self, head: HeadView, state: SampleState) -> bool:
        if self.metric == "max_softmax":
            return head.max_softmax() >= self.thresholds[head.exit_index]
        return head.entropy() <= self.thresholds[head.exit_index]

    def describe(self) -> dict:
        return {"policy": self.name, "metric": self.metric, "thresholds": self.thresholds}
