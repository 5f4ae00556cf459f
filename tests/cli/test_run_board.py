"""`edgeexit run` on a board tree without the simulator's marker: the real-board path (plain file
I/O, the INA3221 meter, host time), periodic inference metered for real, and the tree restored."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.helpers import edgeexit, json_out


# Kernel-derived: show_setspeed prints policy->cur under userspace and "<unsupported>" otherwise, so a
# real kernel resets it when the governor is restored; plain files cannot, and writing "<unsupported>"
# back would be refused by a kernel. The governor it depends on is compared.
DERIVED = ("scaling_setspeed",)


def _snapshot(root: Path):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in DERIVED}


def test_periodic_run_meters_idle_and_restores(tmp_path: Path):
    root = tmp_path / "board"
    assert edgeexit("sim", "init", "--board", "jetson-nano", str(root)).returncode == 0
    shutil.rmtree(str(root / ".edgeexit-sim"))  # no marker: edgeexit must treat it as a real board
    before = _snapshot(root)
    out = tmp_path / "r.jsonl"
    for _ in range(4):  # until some inference's energy is known, so the period check below runs (1 run in 3 knew none)
        s = json_out(edgeexit("run", "--board", "jetson-nano", "--sysfs-root", str(root), "--policy", "predictive",
                              "--deadline-ms", "5", "--period-ms", "10", "--limit", "40", "--output", str(out),
                              "--json"))
        if any(json.loads(line)["energy_mj"] is not None for line in out.read_text().splitlines()):
            break
    assert s["simulated"] is False and s["latency_source"] == "host"
    assert s["energy_source"].startswith("INA3221 6-0040")
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 40
    # a host inference here is a tenth of a ms, mostly Python holding the lock the sampler's thread needs: its
    # reads rarely fall inside one, so how many are priced is reported (tests/energy prices them exactly)
    assert "reads inside inference windows" in s["energy_method"]
    assert s.get("energy_known", len(recs)) == sum(r["energy_mj"] is not None for r in recs)
    assert any(r["energy_mj"] is not None for r in recs), "no run of four knew any inference's energy"
    for r in recs:
        # the tree's static 5 V input reading is metered over every idle gap; an inference of well under a ms is
        # known once a 200 Hz read has landed inside one, and its period with it
        assert r["idle_energy_mj"] > 0
        assert (r["energy_period_mj"] is None) == (r["energy_mj"] is None)
        if r["energy_mj"] is not None:
            assert r["energy_period_mj"] == pytest.approx(r["energy_mj"] + r["idle_energy_mj"], abs=2e-6)
    assert _snapshot(root) == before


def test_an_unmetered_periodic_run_names_its_period(tmp_path: Path):
    """With --meter none the summary gave the actual periods and the overrun rate but not the period they were
    run against (the key was missing, not null)."""
    root = tmp_path / "board"
    assert edgeexit("sim", "init", "--board", "jetson-nano", str(root)).returncode == 0
    shutil.rmtree(str(root / ".edgeexit-sim"))  # a real board's path
    s = json_out(edgeexit("run", "--board", "jetson-nano", "--sysfs-root", str(root), "--period-ms", "5",
                          "--limit", "10", "--meter", "none", "--json"))
    assert s["period_ms"] == 5.0 and s["mean_energy_period_mj"] is None and "mean_period_actual_ms" in s


def test_tree_of_another_board_is_refused_and_left_alone(tmp_path: Path):
    # A Pi 5 tree (no simulator marker) whose cpufreq is gone, as on a host that is not the board: so
    # every command stops at once with one line naming the fix instead of a bare ENOENT later.
    from tests.cli.helpers import assert_one_line_error

    root = tmp_path / "board"
    assert edgeexit("sim", "init", "--board", "raspberry-pi-5", str(root)).returncode == 0
    shutil.rmtree(str(root / ".edgeexit-sim"))
    shutil.rmtree(str(root / "sys/devices/system/cpu/cpufreq"))
    before = _snapshot(root)
    for args in (("run", "--cpu-khz", "1500000", "--limit", "2"), ("status",), ("restore",)):
        p = edgeexit(*args, "--board", "raspberry-pi-5", "--sysfs-root", str(root))
        assert_one_line_error(p, "policy0 does not exist", "not a running raspberry-pi-5", "--sysfs-root DIR")
        # only run has --simulate: status and restore told their users to add an option they refuse
        assert ("--simulate" in p.stderr) == (args[0] == "run"), p.stderr
    assert _snapshot(root) == before


def test_reader_gone_exits_141_quietly_and_restores(tmp_path: Path):
    """`edgeexit run | head -c0`: click turned the EPIPE into a silent exit 1, which a script reads as a failed
    run. It is now 141, as a shell reports a pipeline member killed by SIGPIPE, with no error on stderr (a plain-file
    tree's clock does not follow a write, which is warned about)."""
    import subprocess
    import sys

    root = tmp_path / "board"
    assert edgeexit("sim", "init", "--board", "jetson-nano", str(root)).returncode == 0
    shutil.rmtree(str(root / ".edgeexit-sim"))
    before = _snapshot(root)
    p = subprocess.Popen([sys.executable, "-m", "edgeexit", "run", "--board", "jetson-nano", "--sysfs-root", str(root),
                          "--policy", "predictive", "--deadline-ms", "5", "--limit", "400"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader is gone before the first record
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141, err
    assert [line for line in err.splitlines() if not line.startswith("edgeexit: warning:")] == [], err
    assert _snapshot(root) == before


def test_a_period_locked_to_the_meters_conversions_is_warned_about(tmp_path: Path):
    """An Orin Nano's INA3221 converts every 7 ms: a 14 ms period puts every conversion at the same phase, where the
    lag fit of energy per inference can be far off (tests/energy/test_busy_idle.py)."""
    root = tmp_path / "board"
    assert edgeexit("sim", "init", "--board", "jetson-orin-nano", str(root)).returncode == 0
    shutil.rmtree(str(root / ".edgeexit-sim"))
    p = edgeexit("run", "--board", "jetson-orin-nano", "--sysfs-root", str(root), "--policy", "threshold",
                 "--period-ms", "14", "--limit", "3", "--json")
    assert p.returncode == 0, p.stderr
    assert "--period-ms 14 is close to a multiple of the power meter's 7 ms update interval" in p.stderr
    p = edgeexit("run", "--board", "jetson-orin-nano", "--sysfs-root", str(root), "--policy", "threshold",
                 "--period-ms", "10", "--limit", "3", "--json")
    assert p.returncode == 0 and "update interval" not in p.stderr, p.stderr


def test_a_deadline_the_default_policy_cannot_plan_for_is_said(tmp_path: Path):
    """A review: `--deadline-ms 1.5` with the default policy ran under the governor (1.7% misses), exit 0, no word,
    while the option's help says the planner meets it."""
    p = edgeexit("run", "--board", "jetson-nano", "--simulate", "--deadline-ms", "1.5", "--limit", "20", "--json")
    assert p.returncode == 0, p.stderr
    assert "--deadline-ms 1.5 is counted, not planned for: --policy threshold makes no forecast" in p.stderr
    assert "--dvfs worst-case" in p.stderr
    for args in (["--dvfs", "worst-case"], ["--policy", "predictive"]):
        q = edgeexit("run", "--board", "jetson-nano", "--simulate", "--deadline-ms", "1.5", "--limit", "20", "--json", *args)
        assert q.returncode == 0 and "not planned for" not in q.stderr, q.stderr
