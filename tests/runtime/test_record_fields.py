"""A simulated run's records: latency_ms is the board model's, the per-segment times are the host's, and
their name says so (audit defect: they were a bare ``segments_ms`` beside the modelled ``latency_ms``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import edgeexit, json_out

pytestmark = pytest.mark.backend


def test_segment_times_are_named_host(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    json_out(edgeexit("run", "--board", "jetson-nano", "--simulate", "--policy", "full", "--limit", "3",
                      "--output", str(out), "--json"))
    for line in out.read_text().splitlines():
        rec = json.loads(line)
        assert rec["simulated"] and "segments_ms" not in rec
        seg = rec["host_segments_ms"]
        assert "block0" in seg and all(v > 0 for v in seg.values())
        assert sum(seg.values()) <= rec["host_latency_ms"] + 1e-6  # invoke times inside the host's wall time
