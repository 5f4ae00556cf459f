"""`edgeexit profile` on a simulated board, then `edgeexit run --profile` plans with it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import assert_one_line_error, edgeexit, json_out


@pytest.mark.parametrize("board", ["jetson-nano", "raspberry-pi-5"])
def test_run_uses_the_profile(tmp_path: Path, board: str):
    prof = tmp_path / "p.json"
    p = edgeexit("profile", "--board", board, "--simulate", "--out", str(prof), "--json")
    assert p.returncode == 0, p.stderr
    s = json_out(edgeexit("run", "--board", board, "--simulate", "--policy", "predictive", "--profile", str(prof),
                          "--deadline-ms", "4", "--period-ms", "10", "--limit", "50", "--json"))
    assert s["cost_model"].startswith("profile {}".format(prof))
    assert s["simulated"] is True and s["deadline_miss_rate"] == 0.0
    data = json.loads(prof.read_text())
    data["board"] = "jetson-tx2"
    prof.write_text(json.dumps(data))
    assert_one_line_error(edgeexit("run", "--board", board, "--simulate", "--policy", "predictive", "--profile", str(prof),
                                   "--limit", "5"), "measured on jetson-tx2")
