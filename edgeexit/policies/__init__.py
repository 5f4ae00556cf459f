"""Exit policies, selectable by name (``edgeexit run --policy NAME``)."""
from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edgeexit.bundle import NOT_CALIBRATED, Bundle, check_bundle
from edgeexit.errors import CalibrationError, EdgeExitError, PolicyError
from edgeexit.jsonvalues import holds_bool
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState
from edgeexit.policies.simple import FullPolicy, ThresholdPolicy


def _full(bundle: Bundle) -> ExitPolicy:
    return FullPolicy()


def _threshold(bundle: Bundle) -> ExitPolicy:
    return ThresholdPolicy.from_calibration(bundle.calibration, len(bundle.exits))


def _predictive(bundle: Bundle, on_miss: str = "repredict") -> ExitPolicy:
    from edgeexit.policies.predictive import PredictivePolicy

    return PredictivePolicy.from_calibration(bundle.calibration, len(bundle.exits), on_miss)


def _pe_heuristic(bundle: Bundle) -> ExitPolicy:
    from edgeexit.policies.pe_heuristic import PEHeuristicPolicy

    return PEHeuristicPolicy.from_calibration(bundle.calibration, len(bundle.exits))


def _eenet(bundle: Bundle) -> ExitPolicy:
    from edgeexit.policies.eenet import EENetPolicy

    return EENetPolicy.from_calibration(bundle.calibration, len(bundle.exits))


def _confidence_head(bundle: Bundle) -> ExitPolicy:
    from edgeexit.policies.confidence_head import ConfidenceHeadPolicy

    return ConfidenceHeadPolicy.from_calibration(bundle.calibration, bundle)


def _oracle(bundle: Bundle, targets: Any = None) -> ExitPolicy:
    from edgeexit.policies.oracle import OraclePolicy

    if targets is None:
        raise PolicyError("the oracle needs each sample's earliest correct exit: pass targets=edgeexit.policies.oracle."
                          "oracle_targets(bundle, samples) (labelled samples), or run it with `edgeexit run --policy "
                          "oracle` or `edgeexit bench`")
    return OraclePolicy(targets)


#: name -> factory(bundle, **options)
POLICIES: Dict[str, Callable[..., ExitPolicy]] = {
    "full": _full,
    "threshold": _threshold,
    "predictive": _predictive,
    "pe-heuristic": _pe_heuristic,
    "eenet": _eenet,
    "confidence-head": _confidence_head,
    "oracle": _oracle,
}


#: calibration.json values that are numbers (or lists of them) in every policy's entry that has them
NUMERIC_ENTRIES = ("thresholds", "tau", "beta", "rounds", "start_exit", "weights", "risk", "entry_risk", "entry_exit")

#: the policies that need their entry in calibration.json (confidence-head first checks the bundle has its heads)
CALIBRATED = ("threshold", "predictive", "pe-heuristic", "eenet")


def policy_names() -> List[str]:
    return list(POLICIES)


def _not_calibrated(bundle: Bundle, name: str) -> Optional[str]:
    """The note `edgeexit calibrate` left for a policy it could not fit, if its entry is absent."""
    cal = bundle.calibration if isinstance(bundle.calibration, dict) else {}
    notes = cal.get(NOT_CALIBRATED)
    if name in cal or not isinstance(notes, dict) or not isinstance(notes.get(name), str):
        return None
    return " ".join(notes[name].split())  # one line, whatever the file holds


def make_policy(name: str, bundle: Bundle, **options: Any) -> ExitPolicy:
    """Build policy ``name`` for ``bundle`` from its stored calibration."""
    check_bundle(bundle, "make_policy", PolicyError)
    try:
        return _make_policy(name, bundle, **options)
    except CalibrationError as err:
        raise naming_bundle(err, bundle.root) from None


def naming_bundle(err: CalibrationError, root: Any) -> CalibrationError:
    """``err`` naming the bundle: the file at fault and `edgeexit calibrate --model DIR`. Run as written, a plain
    `edgeexit calibrate` recalibrated the demo bundle and left a user's own bundle broken (a review)."""
    msg = err.message
    if msg.startswith("calibration.json:"):
        msg = "{}{}".format(Path(str(root)) / "calibration.json", msg[len("calibration.json"):])
    if "--model" not in msg:
        msg = msg.replace("run `edgeexit calibrate`", "run `edgeexit calibrate --model {}`".format(root))
    return type(err)(msg)


def _make_policy(name: str, bundle: Bundle, **options: Any) -> ExitPolicy:
    if not isinstance(name, str):
        raise PolicyError("make_policy takes a policy's name (a str), not a {}; choose one of: {}".format(
            type(name).__name__, ", ".join(POLICIES)))
    factory = POLICIES.get(name)
    if factory is None:
        raise PolicyError("unknown policy '{}'; choose one of: {}".format(name, ", ".join(POLICIES)))
    params = list(inspect.signature(factory).parameters.values())[1:]
    takes = [p.name for p in params if p.kind != p.VAR_KEYWORD]
    anything = any(p.kind == p.VAR_KEYWORD for p in params)  # a factory of one's own may take **options
    unknown = [] if anything else sorted(k for k in options if k not in takes)
    if unknown:  # a misspelt option (onmiss=) was dropped without a word
        raise PolicyError("policy {} takes no option {}; {}".format(
            name, ", ".join(unknown), "its options: " + ", ".join(takes) if takes else "it takes none"))
    why = _not_calibrated(bundle, name)
    if why is not None:  # "run edgeexit calibrate" would send the user in circles: say why it was left out
        raise CalibrationError("the bundle has no {} calibration: `edgeexit calibrate` could not fit it: {}".format(name, why))
    if name in CALIBRATED and not bundle.calibration_read and not bundle.calibration:  # bench fits its own
        raise CalibrationError("bundle {} was loaded with calibration=False, so its calibration.json was not read; "
                               "load it with load_bundle({!r}) for the {} policy".format(bundle.root, str(bundle.root), name))
    if name in CALIBRATED and not (isinstance(bundle.calibration, dict) and bundle.calibration.get(name)):
        raise CalibrationError("bundle {} has no {} calibration; run `edgeexit calibrate --model {}`".format(
            bundle.root, name, bundle.root))
    entry = bundle.calibration.get(name) if isinstance(bundle.calibration, dict) else None
    if isinstance(entry, dict):
        bad = next((k for k in NUMERIC_ENTRIES if holds_bool(entry.get(k))), None)
        if bad is not None:  # float(true) is 1.0: a threshold of 1, a beta of 1, a start at exit 1
            raise CalibrationError("calibration.json: {}'s {} holds true or false where numbers belong; run `edgeexit "
                                   "calibrate` again".format(name, bad))
    try:
        policy = factory(bundle, **options)
        for attr in ("thresholds", "tau", "beta", "risk", "entry_risk"):  # NaN/inf parse as floats but no confidence compares with them
            values = getattr(policy, attr, None)
            if values is not None and not all(math.isfinite(float(v)) for v in np.atleast_1d(values)):
                raise CalibrationError("calibration.json: {}'s {} are not all finite numbers; run `edgeexit calibrate` "
                                       "again".format(name, attr))
        return policy
    except EdgeExitError:
        raise  # the factory's own one-line errors (no confidence heads, no calibration) name their fix
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as err:
        # A hand-edited or corrupt calibration.json: values of the wrong type or shape for this policy.
        raise CalibrationError("calibration.json: the {} entry is malformed ({}: {}); run `edgeexit calibrate` again".format(
            name, type(err).__name__, err)) from None


__all__ = ["ExitPolicy", "HeadView", "SampleState", "make_policy", "policy_names", "POLICIES"]
