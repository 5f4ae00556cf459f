"""Large block outputs travel as views of the interpreter's buffer; they must never outlive a sample."""
from __future__ import annotations

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import quantize_inputs
from edgeexit.policies.simple import FullPolicy, ThresholdPolicy
from edgeexit.runtime import Runtime
from edgeexit.segments import Segment

pytestmark = pytest.mark.backend


def test_views_are_dropped_between_samples(monkeypatch):
    monkeypatch.setattr(Segment, "VIEW_BYTES", 1)  # force the view path on the demo's small tensors
    b = load_bundle()
    with Runtime(b) as rt:
        xq = quantize_inputs(b.split("evaluation").x[:30], b.manifest.input)
        ref = [r.label for r in (rt.infer(x, _bound(FullPolicy(), rt)) for x in xq)]
    with Runtime(b) as rt2:
        pol = _bound(ThresholdPolicy([0.0] * 7 + [0.0]), rt2)
        for x in xq:  # many invokes in a row: LiteRT raises if a view were still alive
            rt2.infer(x, pol)
        full = _bound(FullPolicy(), rt2)
        assert [rt2.infer(x, full).label for x in xq] == ref


def _bound(p, rt):
    p.bind(rt)
    return p
