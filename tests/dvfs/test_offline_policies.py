"""CPU policies whose CPUs are all offline (TX2 Denver in its default nvpmodel mode MAXP_CORE_ARM): the
kernel refuses their writes, so the controller pins and restores only the online ones and says so once."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeexit.dvfs import open_board
from edgeexit.errors import DvfsError
from edgeexit.sim.kernel import SimulatedKernel
from tests.faults.helpers import cli, diff, one_line_error, tree
from tests.sim.helpers import make_tree, snapshot

CPU = "sys/devices/system/cpu"
DENVER = CPU + "/cpufreq/policy1"


def _set_online(k: SimulatedKernel, cpus: list, on: bool) -> None:
    for c in cpus:
        k.write("{}/cpu{}/online".format(CPU, c), b"1\n" if on else b"0\n")


def test_offline_policy_is_skipped_said_once_and_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    k = make_tree(tmp_path / "t", "jetson-tx2")
    _set_online(k, [1, 2], False)  # MAXP_CORE_ARM, whatever the tree booted in
    before = snapshot(k.root)
    denver = {p: v for p, v in before.items() if p.startswith(DENVER)}
    with open_board("jetson-tx2", sysfs_root=k.root) as session:
        ctl = session.controller
        assert ctl.set_cpu_khz(1420800) == 1420800 == ctl.cpu_khz()
        assert ctl.set_cpu_khz("min") == ctl.cpu_opps_khz()[0]
        assert ctl.set_cpu_khz("max") == ctl.cpu_opps_khz()[-1]
        saved = json.loads(session.state_file.read_text())
        assert [d["name"] for d in saved["domains"] if d["kind"] == "cpu"] == ["policy0"]
        assert {p: v for p, v in snapshot(k.root).items() if p.startswith(DENVER)} == denver
    assert snapshot(k.root) == before
    err = capsys.readouterr().err
    assert err.count("policy1 (CPUs 1,2) has every CPU offline") == 1 and "cpuN/online" in err, err


def test_simulated_tx2_runs_pinned_and_planned() -> None:
    res = cli("run", "--board", "jetson-tx2", "--simulate", "--cpu-khz", "1420800", "--limit", "3", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["cpu_khz"] == 1420800
    assert [l for l in res.stderr.splitlines() if "policy1" in l and "offline" in l] != []
    res = cli("run", "--board", "jetson-tx2", "--simulate", "--policy", "predictive", "--deadline-ms", "4",
              "--period-ms", "10", "--limit", "3", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["dvfs"] == "planned"


def test_a_bad_cpu_khz_is_the_only_line(tmp_path: Path) -> None:
    # The offline note is said at the first pin, so a value outside the table is the run's one line.
    make_tree(tmp_path / "t", "jetson-tx2")
    res = cli("run", "--board", "jetson-tx2", "--sysfs-root", str(tmp_path / "t"), "--cpu-khz", "123", "--limit", "1")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--cpu-khz 123 is outside" in res.stderr, res.stderr


def test_no_online_policy_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    # A config whose policies are all unplugged (cpu0 included: some SoCs can unplug it) refuses at once.
    k = make_tree(tmp_path / "t", "jetson-tx2")
    state = k.load_state()
    state["online"] = {c: 0 for c in state["online"]}
    k.save_state(state)
    k.render(state)
    before = tree(k.root)
    res = cli("run", "--board", "jetson-tx2", "--sysfs-root", str(k.root), "--cpu-khz", "max", "--limit", "2")
    one_line_error(res, "no CPU of board jetson-tx2's cpufreq policies is online", "policy1 CPUs 1,2", "echo 1 >")
    assert res.returncode == 2
    assert diff(tree(k.root), before) == []


def test_a_pinned_policy_unplugged_before_restore_names_the_fix(tmp_path: Path, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-tx2")
    _set_online(k, [1, 2], True)  # MAXN: both clusters online, both pinned
    before = tree(k.root)
    with pytest.raises(DvfsError) as info:
        with open_board("jetson-tx2", sysfs_root=k.root) as session:
            session.controller.set_cpu_khz("max")
            _set_online(k, [1, 2], False)  # nvpmodel switched mode under the run
    assert "policy1: its CPUs (1,2) are offline" in str(info.value) and "edgeexit restore" in str(info.value)
    assert list(runtime_dir.glob("*.state.json"))  # kept for `edgeexit restore`
    _set_online(k, [1, 2], True)
    res = cli("restore", "--board", "jetson-tx2", "--sysfs-root", str(k.root))
    assert res.returncode == 0, res.stderr
    assert diff(tree(k.root), before) == []


def test_status_survives_a_kernel_that_refuses_reads_of_an_offline_policy(tmp_path: Path) -> None:
    # Review finding: kernels with "cpufreq: Abort show/store for half initialized policy" (5.19 and
    # backports) answer EBUSY to every read of an inactive policy; status read them all and failed outright.
    k = make_tree(tmp_path / "t", "jetson-tx2")
    _set_online(k, [1, 2], False)
    for node in ("scaling_governor", "scaling_cur_freq", "scaling_min_freq", "scaling_max_freq"):
        k.inject_error("{}/{}".format(DENVER, node), "EBUSY", op="read", count=10)
    res = cli("status", "--board", "jetson-tx2", "--sysfs-root", str(k.root), "--json")
    assert res.returncode == 0, res.stderr
    denver = [d for d in json.loads(res.stdout)["domains"] if d["path"] == DENVER][0]
    assert denver["online"] is False and denver["cur_khz"] is None and denver["governor"] is None
    human = cli("status", "--board", "jetson-tx2", "--sysfs-root", str(k.root))
    assert human.returncode == 0 and "governor ?" in human.stdout and "CPUs offline" in human.stdout, human.stderr


def test_an_offline_policy_stays_offline_when_even_related_cpus_is_refused(tmp_path: Path) -> None:
    """Such a kernel refuses related_cpus too (every attribute of the inactive policy): its CPUs then come from
    the board config. It counted as online, so status failed on its EBUSY and a pin wrote to it."""
    k = make_tree(tmp_path / "t", "jetson-tx2")
    _set_online(k, [1, 2], False)
    nodes = ("related_cpus", "affected_cpus", "scaling_governor", "scaling_cur_freq", "scaling_min_freq",
             "scaling_max_freq", "scaling_available_frequencies", "scaling_available_governors", "scaling_setspeed")
    for node in nodes:
        k.inject_error("{}/{}".format(DENVER, node), "EBUSY", op="read", count=1000)
    res = cli("status", "--board", "jetson-tx2", "--sysfs-root", str(k.root), "--json")
    assert res.returncode == 0, res.stderr
    denver = [d for d in json.loads(res.stdout)["domains"] if d["path"] == DENVER][0]
    assert denver["online"] is False
    before = snapshot(k.root)
    with open_board("jetson-tx2", sysfs_root=k.root) as session:
        assert session.controller.set_cpu_khz("max") == session.controller.cpu_opps_khz()[-1]
        assert {p: v for p, v in snapshot(k.root).items() if p.startswith(DENVER)} == {
            p: v for p, v in before.items() if p.startswith(DENVER)}
    after = snapshot(k.root)
    changed = [p for p in set(before) | set(after) if before.get(p) != after.get(p)]
    assert changed == [".edgeexit-sim/faults.json"]  # the injected faults' counts only
