"""The oracle: knows each sample's cheapest correct exit and runs only up to it, evaluating that head
alone. Benchmarks only: it is the lower bound on MACs that any policy over these exits could reach at
the best accuracy they allow. A sample no exit classifies correctly costs it the cheapest exit (any
exit is equally wrong), not the final one."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from edgeexit.errors import PolicyError
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState

#: earliest_correct's target for a sample no exit gets right; OraclePolicy sends it to the cheapest exit
NO_CORRECT_EXIT = -1


def exit_costs(runtime: Any) -> List[int]:
    """MACs of running a sample to exit e and evaluating only that head, per exit: the oracle's cost."""
    return [int(m) + int(h) for m, h in zip(runtime.macs_to_exit, runtime.head_macs)]


def earliest_correct(pred: np.ndarray, y: np.ndarray, cost: Optional[Sequence[float]] = None) -> np.ndarray:
    """Per sample, the exit the oracle runs to: the first exit whose prediction equals the label, or with
    ``cost`` (per exit, e.g. :func:`exit_costs`) the cheapest such exit (the first of equals).

    A sample no exit gets right: the cheapest exit by ``cost`` when given, else NO_CORRECT_EXIT, which
    OraclePolicy resolves to the cheapest exit of the runtime it is bound to.
    """
    ok = pred == y[:, None]
    none = ~ok.any(axis=1)
    if cost is None:
        out = np.argmax(ok, axis=1)
        out[none] = NO_CORRECT_EXIT
        return out
    c = np.asarray(cost, dtype=np.float64)
    out = np.argmin(np.where(ok, c[None, :], np.inf), axis=1)  # argmin: the first of equal costs
    out[none] = int(np.argmin(c))
    return out


class OraclePolicy(ExitPolicy):
    name = "oracle"
    forecasts = True  # a perfect forecast
    heads_before_forecast = False  # only the forecast head ever runs

    def __init__(self, targets: Sequence[int]) -> None:
        try:
            if isinstance(targets, (str, bytes)):
                raise TypeError
            self.targets = [int(t) for t in targets]
        except (TypeError, ValueError, OverflowError):
            # the type, not the value: a 2-D array's repr spans lines, and the message must stay one
            raise PolicyError("the oracle's targets must be one exit index per sample, not this {}; compute them with "
                              "edgeexit.policies.oracle.oracle_targets(bundle, samples)".format(
                                  type(targets).__name__)) from None
        self._target = 0
        self._cheapest = 0

    def bind(self, runtime: Any) -> None:
        super().bind(runtime)
        costs = exit_costs(runtime)
        self._cheapest = costs.index(min(costs))  # where a sample no exit gets right goes
        bad = [t for t in self.targets if not NO_CORRECT_EXIT <= t < len(costs)]
        if bad:
            raise PolicyError("oracle target {} is not an exit of this bundle (0..{}, or {} for none); compute the "
                              "targets with earliest_correct on this bundle's exit table".format(
                                  bad[0], len(costs) - 1, NO_CORRECT_EXIT))

    def start(self, state: SampleState) -> None:
        i = state.index
        if not 0 <= i < len(self.targets):  # an IndexError, or the last target for a state without an index
            raise PolicyError("the oracle has {} targets and no target for sample {}; give one target per sample "
                              "(and run through run_samples, or pass SampleState(index))".format(len(self.targets), i))
        t = self.targets[i]
        self._target = self._cheapest if t == NO_CORRECT_EXIT else t
        state.planned_exit = self._target

    def wants_head(self, exit_index: int, state: SampleState) -> bool:
        return exit_index == self._target

    def decide(self, head: HeadView, state: SampleState) -> bool:
        return True


def oracle_targets(bundle: Any, samples: Any, interpreter: Optional[str] = None) -> np.ndarray:
    """Each labelled sample's target for the oracle (:func:`earliest_correct` by :func:`exit_costs`), from every exit
    of ``bundle`` run on ``samples`` with a runtime of its own."""
    from edgeexit.bundle import check_bundle
    from edgeexit.bundle.data import check_given_samples, quantize_inputs
    from edgeexit.runtime import Runtime

    check_bundle(bundle, "oracle_targets", PolicyError)
    check_given_samples(samples, bundle.manifest.input, bundle.manifest.num_classes)
    y = samples.require_labels("the oracle policy")
    with Runtime(bundle, interpreter=interpreter) as rt:
        table = rt.exit_table(quantize_inputs(samples.x, bundle.manifest.input))
        return earliest_correct(table.pred, y, exit_costs(rt))
