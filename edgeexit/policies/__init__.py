"""Exit policies, selectable by name (``edgeexit run --policy NAME``)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List

from edgeexit.bundle import Bundle
from edgeexit.errors import PolicyError
from edgeexit.policies.base import ExitPolicy, HeadView, SampleState
from edgeexit.policies.simple import FullPolicy, ThresholdPolicy


def _full(bundle: Bundle, **_: Any) -> ExitPolicy:
    return FullPolicy()


def _threshold(bundle: Bundle, **_: Any) -> ExitPolicy:
    return ThresholdPolicy.from_calibration(bundle.calibration, len(bundle.exits))


#: name -> factory(bundle, **options); later policies register here
POLICIES: Dict[str, Callable[..., ExitPolicy]] = {
    "full": _full,
    "threshold": _threshold,
}


def policy_names() -> List[str]:
    return list(POLICIES)


def make_policy(name: str, bundle: Bundle, **options: Any) -> ExitPolicy:
    """Build policy ``name`` for ``bundle`` from its stored calibration."""
    factory = POLICIES.get(name)
    if factory is None:
        raise PolicyError("unknown policy '{}'; choose one of: {}".format(name, ", ".join(POLICIES)))
    return factory(bundle, **options)


__all__ = ["ExitPolicy", "HeadView", "SampleState", "make_policy", "policy_names", "POLICIES"]
