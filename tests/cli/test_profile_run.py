"""`edgeexit profile` on a simulated board, then `edgeexit run --profile` plans with it and `edgeexit
calibrate --eenet-budget-ms` counts in it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeexit.paths import demo_bundle_dir
from tests.cli.helpers import assert_one_line_error, edgeexit, json_out


@pytest.mark.parametrize("board", ["jetson-nano", "raspberry-pi-5"])
def test_run_uses_the_profile(tmp_path: Path, board: str):
    prof = tmp_path / "p.json"
    p = edgeexit("profile", "--board", board, "--simulate", "--out", str(prof), "--json")
    assert p.returncode == 0, p.stderr
    s = json_out(edgeexit("run", "--board", board, "--simulate", "--policy", "predictive", "--profile", str(prof),
                          "--deadline-ms", "4", "--period-ms", "10", "--limit", "50", "--json"))
    assert s["cost_model"] == "profile {} (simulated latency, simulated power)".format(prof)
    assert s["simulated"] is True and s["deadline_miss_rate"] == 0.0
    data = json.loads(prof.read_text())
    data["board"] = "jetson-tx2"
    prof.write_text(json.dumps(data))
    assert_one_line_error(edgeexit("run", "--board", board, "--simulate", "--policy", "predictive", "--profile", str(prof),
                                   "--limit", "5"), "measured on jetson-tx2")


def test_calibrate_eenet_for_a_budget_in_ms(tmp_path: Path):
    """`edgeexit calibrate --eenet-budget-ms` counts a profile's segment latencies (or this host's)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(bundle))
    prof = tmp_path / "nano.json"
    edgeexit("profile", "--board", "jetson-nano", "--simulate", "--model", str(bundle), "--out", str(prof), "--json")
    s = json_out(edgeexit("calibrate", "--model", str(bundle), "--eenet-budget-ms", "0.6", "--latency-profile", str(prof), "--json"))
    e = s["policies"]["eenet"]
    assert e["budget_ms"] == 0.6 and e["mean_ms"] <= 0.6 and e["latency_source"].startswith("profile {}".format(prof))
    stored = json.loads((bundle / "calibration.json").read_text())["eenet"]
    assert stored["thresholds"] == e["thresholds"]
    # what samples the fit never saw spend, in the same latencies
    assert e["out_of_fold_k"] == 4 and 0.3 < e["out_of_fold_mean_ms"] < 0.9
    text = edgeexit("calibrate", "--model", str(bundle), "--eenet-budget-ms", "0.6", "--latency-profile", str(prof)).stdout
    assert "out of fold (4-fold) {:.4g} ms on average".format(e["out_of_fold_mean_ms"]) in text
    host = json_out(edgeexit("calibrate", "--model", str(bundle), "--eenet-budget-ms", "1", "--json"))["policies"]["eenet"]
    assert host["latency_source"].startswith("measured on this host") and host["mean_ms"] <= 1
    assert_one_line_error(edgeexit("calibrate", "--model", str(bundle), "--eenet-budget-ms", "0.6", "--latency-profile", str(prof),
                                   "--latency-khz", "5"), "no column for 5 kHz", "pick one of")
    assert_one_line_error(edgeexit("calibrate", "--model", str(bundle), "--eenet-budget-ms", "0.001", "--latency-profile", str(prof)),
                          "raise the budget")
    assert_one_line_error(edgeexit("calibrate", "--model", str(bundle), "--eenet-budget-ms", "1", "--eenet-budget-macs", "1e6"),
                          "not both")


def test_an_explicit_meter_on_a_simulated_board_is_warned_about_once(tmp_path: Path):
    # A simulated board reports modelled energy whatever --meter (or --gpu-hz) says: said in one line, not
    # dropped silently.
    runs = {
        "run": ("run", "--limit", "2", "--meter", "joulescope"),
        "profile": ("profile", "--meter", "none", "--out", str(tmp_path / "p.json")),
        "bench": ("bench", "--limit", "20", "--no-sweep", "--no-sensitivity", "--meter", "ina3221",
                  "--out", str(tmp_path / "b")),
    }
    for name, args in runs.items():
        p = edgeexit(*args, "--board", "jetson-nano", "--simulate")
        assert p.returncode == 0, p.stderr
        assert p.stderr.count("is ignored on a simulated board: its energy is modelled") == 1, (name, p.stderr)
    gpu = edgeexit("run", "--limit", "2", "--board", "jetson-nano", "--simulate", "--gpu-hz", "max")
    assert gpu.returncode == 0 and gpu.stderr.count("--gpu-hz is pinned, but it changes no simulated figure") == 1
    quiet = edgeexit("run", "--limit", "2", "--board", "jetson-nano", "--simulate")
    assert "--meter" not in quiet.stderr  # auto, the default, is not a choice to warn about
    for args in (("run", "--limit", "2"), ("profile", "--out", str(tmp_path / "r.json"))):  # nor was the rate
        p = edgeexit(*args, "--meter-rate-hz", "5", "--board", "jetson-nano", "--simulate")
        assert p.returncode == 0 and p.stderr.count("--meter-rate-hz is ignored on a simulated board") == 1, p.stderr
