"""`edgeexit bench`: every policy on the same held-out samples under the same deadline, side by side."""
from __future__ import annotations

from edgeexit.bench.core import ARMS, BenchConfig, run_bench

__all__ = ["ARMS", "BenchConfig", "run_bench"]
