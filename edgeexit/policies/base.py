"""The exit-policy interface.

The runtime runs block k, then asks the policy whether to evaluate the exit head that sits after
block k (``wants_head``: Predictive Exit says no to every head but the forecast one), then whether
to exit there (``decide``). The final exit is always evaluated and always taken. A policy may set
``state.planned_exit`` (its forecast) so a DVFS planner can size the remaining work.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, List, Optional

import numpy as np

from edgeexit.bundle.manifest import SegmentSpec

if TYPE_CHECKING:  # pragma: no cover
    from edgeexit.runtime import Runtime


class HeadDecoder:
    """Per-exit constants that turn int8 logits into softmax statistics without float work per class.

    max-softmax = 1 / sum_i exp((q_i - q_max) * scale): the zero point cancels, so a 256-entry table
    of exp(-d * scale) replaces the exponentials.
    """

    __slots__ = ("scale", "zero_point", "exp_table", "conf_scale", "conf_zero_point")

    def __init__(self, spec: SegmentSpec) -> None:
        self.scale = float(spec.output.scale)
        self.zero_point = int(spec.output.zero_point)
        self.exp_table = [math.exp(-d * self.scale) for d in range(256)]
        conf = spec.confidence_output
        self.conf_scale = float(conf.scale) if conf is not None else 0.0
        self.conf_zero_point = int(conf.zero_point) if conf is not None else 0


def softmax_of(z: np.ndarray) -> np.ndarray:
    """Softmax of one head's dequantized float32 logits (C,). HeadView and calibration share this one
    implementation, so a score fitted on the calibration split is bit for bit the score at run time."""
    e = np.exp(z - z.max())
    return e / e.sum()


def normalized_entropy_of(p: np.ndarray) -> float:
    """Entropy of one probability vector (C,) divided by log(C), in [0, 1] (0 = certain)."""
    q = p[p > 0]
    return float(-(q * np.log(q)).sum() / math.log(len(p)))


class HeadView:
    """One evaluated exit head for one sample: int8 logits plus cheap derived statistics."""

    __slots__ = ("exit_index", "codes", "decoder", "conf_q", "_top", "_sum")

    def __init__(self, exit_index: int, logits_q: np.ndarray, decoder: HeadDecoder, conf_q: Optional[np.ndarray] = None) -> None:
        self.exit_index = exit_index
        self.codes: List[int] = logits_q.reshape(-1).tolist()
        self.decoder = decoder
        self.conf_q = conf_q
        self._top = -1
        self._sum = 0.0

    def argmax(self) -> int:
        if self._top < 0:
            codes = self.codes
            self._top = codes.index(max(codes))
        return self._top

    def max_softmax(self) -> float:
        # This runs for every evaluated head of every sample: a list comprehension over the table is the
        # cheapest pure-Python form (about 1 us for 10 classes).
        if self._sum == 0.0:
            codes = self.codes
            qmax = max(codes)
            tab = self.decoder.exp_table
            self._sum = sum([tab[qmax - c] for c in codes])
        return 1.0 / self._sum

    def logits(self) -> np.ndarray:
        return (np.asarray(self.codes, dtype=np.float32) - self.decoder.zero_point) * self.decoder.scale

    def probs(self) -> np.ndarray:
        return softmax_of(self.logits())

    def entropy(self) -> float:
        """Normalized entropy in [0, 1] (0 = certain)."""
        return normalized_entropy_of(self.probs())

    def confidence(self) -> float:
        """The PTEENet confidence head's output in [0, 1]; the max-softmax where there is no such head."""
        if self.conf_q is None:
            return self.max_softmax()
        d = self.decoder
        return float((int(self.conf_q.reshape(-1)[0]) - d.conf_zero_point) * d.conf_scale)


class SampleState:
    """What a policy and the hooks see of the sample being inferred."""

    __slots__ = ("index", "label", "planned_exit", "heads", "block_index", "block_output", "extra")

    def __init__(self, index: int = -1, label: int = -1) -> None:
        self.index = index
        self.label = label  # true label where known (only the oracle may use it)
        self.planned_exit = -1  # the policy's forecast exit, -1 = none
        self.heads: List[int] = []  # exit heads evaluated, in order
        self.block_index = -1
        self.block_output: Optional[np.ndarray] = None
        self.extra: Any = None


class ExitPolicy:
    """Base class: evaluate every head, never exit early (subclasses override)."""

    name = "base"
    #: whether the DVFS planner may trust ``planned_exit`` as a forecast of the remaining work
    forecasts = False
    #: the block whose output the policy reads (``state.block_output``), None if it reads none; set by bind
    feature_block: Optional[int] = None
    #: the exit the policy forecasts before it knows anything of a sample (its commonest), None if it has no
    #: such prior; set by bind. A DVFS planner keeps its home clock for that work.
    typical_exit: Optional[int] = None

    #: the runtime this policy is bound to (set by bind)
    runtime: Optional["Runtime"] = None

    def bind(self, runtime: "Runtime") -> None:
        """Called once per runtime, before its first inference (Runtime.infer binds a policy bound elsewhere or
        not at all; run_samples binds once per run); precompute tables here, never per inference."""
        self.runtime = runtime

    #: whether a head before the forecast exit may still run (predictive evaluates a cheaper head first when
    #: that is the expected-cost choice); a DVFS planner then reserves time for those heads too
    heads_before_forecast = True

    def may_evaluate(self, exit_index: int) -> bool:
        """Whether the head ``exit_index`` can ever run under this policy (after bind): what a DVFS planner
        must reserve time for. Every head can, unless a policy knows better."""
        return True

    def start(self, state: SampleState) -> None:
        """A new sample begins."""

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        """Evaluate the head ``exit_index`` whose block just ran?"""
        return True

    def decide(self, head: HeadView, state: SampleState) -> bool:
        """Exit at this evaluated head?"""
        return False

    def describe(self) -> dict:
        return {"policy": self.name}
