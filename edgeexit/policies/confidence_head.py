"""PTEENet-style exits: each head also outputs a confidence in [0, 1]; exit at the first head whose
confidence passes its threshold (calibrated on held-out data like the max-softmax thresholds)."""
from __future__ import annotations

from typing import Any, Dict, List

from edgeexit.errors import CalibrationError, PolicyError
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState


class ConfidenceHeadPolicy(ExitPolicy):
    name = "confidence-head"

    def __init__(self, thresholds: List[float]) -> None:
        self.thresholds = [float(t) for t in thresholds]

    @classmethod
    def from_calibration(cls, calibration: Dict[str, Any], bundle: Any) -> "ConfidenceHeadPolicy":
        if not any(e.confidence_output is not None for e in bundle.exits[:-1]):
            raise PolicyError(
                "bundle {} has no confidence heads; choose another --policy, or train a bundle that has them with "
                "`python -m tools.train --strategy post-trained`".format(bundle.name)
            )
        entry = calibration.get("confidence-head")
        if not entry or len(entry.get("thresholds", [])) != len(bundle.exits):
            raise CalibrationError("bundle {} has no confidence-head calibration; run `edgeexit calibrate --model {}`".format(
                bundle.root, bundle.root))
        return cls(entry["thresholds"])

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        return self.thresholds[exit_index] <= 1.0  # a disabled exit's head is skipped

    def decide(self, head: HeadView, state: SampleState) -> bool:
        return head.confidence() >= self.thresholds[head.exit_index]

    def describe(self) -> dict:
        return {"policy": self.name, "thresholds": self.thresholds}
