"""The simulated board probe: what each record says of an inference and the period after it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import edgeexit


def test_a_simulated_period_that_overruns_is_counted_and_the_idle_transition_recorded(tmp_path: Path) -> None:
    """The governor arm's slow inferences delay the next one: the simulated probe now says so, as a metered one
    does (the bench note needs it). And the drop to the idle point after an inference, charged in its energy per
    period, is counted in the record (freq_transitions alone missed it)."""
    out = tmp_path / "gov.jsonl"
    res = edgeexit("run", "--board", "jetson-nano", "--simulate", "--policy", "threshold", "--dvfs", "governor",
              "--deadline-ms", "3.89", "--period-ms", "3.89", "--limit", "300", "--json", "--output", str(out))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    over = [r for r in recs if r["latency_ms"] > 3.89]
    assert over and all(r["period_overrun"] and r["period_actual_ms"] == r["latency_ms"] for r in over)
    assert all(not r["period_overrun"] and r["period_actual_ms"] == 3.89 for r in recs if r["latency_ms"] <= 3.89)
    assert summary["period_overrun_rate"] == pytest.approx(len(over) / len(recs))
    assert summary["mean_period_actual_ms"] == pytest.approx(sum(r["period_actual_ms"] for r in recs) / len(recs))
    out = tmp_path / "pred.jsonl"
    # 2.5 ms: room for the transition back from a parked clock (at 2 ms only f_max, 1.84 ms worst case, meets
    # the deadline from where it parks, so the planner does not move between inferences)
    res = edgeexit("run", "--board", "jetson-nano", "--simulate", "--policy", "predictive", "--deadline-ms", "2.5",
              "--period-ms", "20", "--limit", "100", "--json", "--output", str(out))
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    moved = [r for r in recs if r["idle_cpu_khz"] != r["cpu_khz_trace"][-1]]
    assert moved and all(r["idle_freq_transitions"] == 1 for r in moved)
    assert all(r["idle_freq_transitions"] == 0 for r in recs if r not in moved)
