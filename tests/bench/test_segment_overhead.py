"""benchmarks/segment_overhead.py on the demo bundle (its --heavy bundle needs TensorFlow to make)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "segment_overhead.py"
DEMO = Path(__file__).resolve().parents[2] / "edgeexit" / "models" / "demo"

pytestmark = pytest.mark.backend


def test_no_warm_up_is_allowed() -> None:
    """--warmup 0 (the option allows it) took the median of no inferences: a StatisticsError traceback."""
    spec = importlib.util.spec_from_file_location("segment_overhead", str(SCRIPT))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    out = mod.measure(DEMO, None, 1, 3, 0, False)
    assert out["full"]["median_latency_ms"] > 0 and out["threshold"]["median_latency_ms"] > 0
