"""A simulated tree whose own files are wrong is refused in one line naming `edgeexit sim init` (A3, A11),
and one tree is served by one `sim mount` at a time (B3)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeexit.dvfs.state import state_path
from edgeexit.errors import DvfsError
from edgeexit.sim.kernel import MARKER, SERVED_FROM, STALE_TMP_S, STATE, SimulatedKernel, writer_tag
from tests.faults.helpers import cli, diff, one_line_error, tree
from tests.sim.helpers import BOARDS, fuse_mount, make_tree, require_fuse

OTHER_FAMILY = {"4.9": "5.10", "5.10": "4.9", "5.15": "5.10", "6.x": "5.15"}


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("family", ["9.9", "other"])
def test_a_marker_naming_another_kernel_family_is_refused(tmp_path: Path, board: str, family: str,
                                                          runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    marker = json.loads((k.root / MARKER).read_text())
    marker["kernel_family"] = OTHER_FAMILY[k.family] if family == "other" else family
    (k.root / MARKER).write_text(json.dumps(marker))
    before = tree(k.root)
    with pytest.raises(DvfsError, match="sim init"):
        SimulatedKernel(k.root)
    res = cli("run", "--board", board, "--sysfs-root", str(k.root), "--cpu-khz", "max", "--limit", "2")
    one_line_error(res, "kernel family {!r}".format(marker["kernel_family"]), "edgeexit sim init")
    assert diff(tree(k.root), before) == []
    assert not list(runtime_dir.glob("*.state.json"))


def _corrupt_state(root: Path, how: str) -> None:
    path = root / STATE
    if how == "object":
        path.write_text("{}")
    elif how == "list":
        path.write_text("[]")
    elif how == "nested":
        path.write_text("[" * 100000 + "]" * 100000)
    else:
        data = json.loads(path.read_text())
        if how == "online":
            data["online"] = {}
        elif how == "policy":
            data["cpufreq"] = {}
        elif how == "min-text":
            first = sorted(data["cpufreq"])[0]
            data["cpufreq"][first]["min"] = "102000"
        path.write_text(json.dumps(data))


STATE_DAMAGE = ["object", "list", "nested", "online", "policy", "min-text"]


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("how", STATE_DAMAGE)
def test_a_corrupt_simulator_state_is_one_line(tmp_path: Path, board: str, how: str, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    _corrupt_state(k.root, how)
    before = tree_raw(k.root)
    res = cli("run", "--board", board, "--sysfs-root", str(k.root), "--cpu-khz", "max", "--limit", "2")
    one_line_error(res, "state", "is corrupt", "make a new one with `edgeexit sim init`")
    assert tree_raw(k.root) == before
    assert not list(runtime_dir.glob("*.state.json"))


def tree_raw(root: Path) -> dict:
    """Every file's bytes (faults.helpers.tree parses state.json, which here is the corrupt file)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("faults", ['{"write": 5}', "[]", '{"read": [{"path": 3}]}', "{not json"])
def test_a_corrupt_fault_file_is_one_line(tmp_path: Path, faults: str, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    (k.root / ".edgeexit-sim/faults.json").write_text(faults)
    before = tree_raw(k.root)
    res = cli("run", "--board", "jetson-nano", "--sysfs-root", str(k.root), "--cpu-khz", "max", "--limit", "2")
    one_line_error(res, "faults.json is corrupt", "delete it")
    assert tree_raw(k.root) == before


@pytest.mark.fuse
def test_a_corrupt_state_is_refused_by_sim_mount_and_named_through_a_mount(tmp_path: Path,
                                                                          runtime_dir: Path) -> None:
    require_fuse()
    k = make_tree(tmp_path / "t", "jetson-nano")
    with fuse_mount(k.root, "jetson-nano", tmp_path / "mnt") as mnt:
        _corrupt_state(k.root, "object")  # after the server made its kernel
        res = cli("run", "--board", "jetson-nano", "--sysfs-root", str(mnt), "--cpu-khz", "max", "--limit", "2")
        one_line_error(res, "corrupt", "edgeexit sim init")
        assert "board's tables" not in res.stderr
    (tmp_path / "mnt2").mkdir()
    res = cli("sim", "mount", "--board", "jetson-nano", "--backing", str(k.root), "--background",
              str(tmp_path / "mnt2"))
    one_line_error(res, "is corrupt", "edgeexit sim init")
    assert not os.path.ismount(str(tmp_path / "mnt2"))


# --- B3: one server per tree ----------------------------------------------------------------------------
@pytest.mark.fuse
def test_a_served_tree_is_not_served_twice(tmp_path: Path, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-xavier-nx")
    m2 = tmp_path / "m2"
    m2.mkdir()
    try:
        with fuse_mount(k.root, "jetson-xavier-nx", tmp_path / "m1") as m1:
            served = (k.root / SERVED_FROM).read_text()
            res = cli("sim", "mount", "--board", "jetson-xavier-nx", "--backing", str(k.root), "--background", str(m2))
            one_line_error(res, "already served", str(m1), "edgeexit sim umount {}".format(m1))
            assert not os.path.ismount(str(m2))
            res = cli("sim", "mount", "--board", "jetson-xavier-nx", "--backing", str(k.root), str(m2))  # foreground
            one_line_error(res, "already served", str(m1))
            # the first mount still serves the tree, under the tree's own lock and state file
            assert (k.root / SERVED_FROM).read_text() == served
            assert state_path("jetson-xavier-nx", m1) == state_path("jetson-xavier-nx", k.root)
    finally:
        if os.path.ismount(str(m2)):  # (only where the second mount was wrongly let through)
            subprocess.run(["fusermount3", "-u", "-z", str(m2)])
    # once it is unmounted, the tree can be served again
    with fuse_mount(k.root, "jetson-xavier-nx", m2) as mnt:
        assert state_path("jetson-xavier-nx", mnt) == state_path("jetson-xavier-nx", k.root)
    assert not (k.root / SERVED_FROM).exists()


@pytest.mark.fuse
def test_a_killed_servers_leftover_does_not_block_the_next_mount(tmp_path: Path, runtime_dir: Path) -> None:
    require_fuse()
    from edgeexit.sim.fusefs import wait_mounted

    k = make_tree(tmp_path / "t", "jetson-nano")
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    m1.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "edgeexit", "sim", "mount", "--board", "jetson-nano", "--backing",
                             str(k.root), str(m1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_mounted(m1, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(m1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert (k.root / SERVED_FROM).exists()  # what SIGKILL left: no server holds it any more
    with fuse_mount(k.root, "jetson-nano", m2) as mnt:
        assert (k.root / SERVED_FROM).read_text().splitlines()[1] == str(mnt)
    assert not os.path.ismount(str(m2))


@pytest.mark.parametrize("board", ["jetson-nano", "raspberry-pi-5"])
def test_a_writer_killed_mid_put_leaves_no_file_once_the_tree_is_opened_again(tmp_path: Path, board: str) -> None:
    """SIGKILL between put()'s mkstemp and its os.replace leaves the temporary file beside the node (a rail on
    the Nano, a vcgencmd answer on the Pi 5); the next kernel on the tree (a run, `restore`) deletes it, and a
    live writer's is left alone."""
    k = make_tree(tmp_path / "t", board)
    before = tree(k.root)
    rel = k.board.power.rails()[0]
    child = ("import os, signal, sys\n"
             "from pathlib import Path\n"
             "from edgeexit.sim.kernel import SimulatedKernel\n"
             "k = SimulatedKernel(Path(sys.argv[1]))\n"
             "os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)\n"
             "k.set_rail(sys.argv[2], 5000.0, 321.0)\n")
    done = subprocess.run([sys.executable, "-c", child, str(k.root), rel], stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    left = [p for p in k.root.rglob(".tmp-*")]
    assert len(left) == 1
    dead_pid = left[0].name[len(".tmp-"):].split("@")[0]
    assert left[0].name.startswith(".tmp-{}@{}-".format(dead_pid, writer_tag().split("@")[1]))
    live = left[0].parent / ".tmp-{}-live".format(writer_tag())
    live.write_text("a put under way\n")
    # the same pid in another PID namespace (a container's writer): it means nothing here; only age judges it
    elsewhere = left[0].parent / ".tmp-{}@1-elsewhere".format(dead_pid)
    elsewhere.write_text("a put under way in a container\n")
    reused = left[0].parent / ".tmp-{}-reused".format(writer_tag())  # a live pid, but the file is old: pid reuse
    reused.write_text("left by a writer killed long ago\n")
    old = time.time() - STALE_TMP_S - 5
    os.utime(str(reused), (old, old))
    SimulatedKernel(k.root)
    assert not left[0].exists() and live.exists() and elsewhere.exists() and not reused.exists()
    os.utime(str(elsewhere), (old, old))
    SimulatedKernel(k.root)
    assert not elsewhere.exists()
    live.unlink()
    assert diff(before, tree(k.root)) == []


def test_ctrl_c_right_after_mkstemp_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review's SIGTERM left an empty `.tmp-*` beside an AGX Orin rail: the signal's exception came between put()'s
    mkstemp and the try that removes the file. put() now holds the signal until the node is written."""
    import tempfile

    k = make_tree(tmp_path / "t", "jetson-nano")
    rel = k.board.power.rails()[0]
    real = tempfile.mkstemp

    def mkstemp_then_ctrl_c(*args, **kwargs):  # type: ignore[no-untyped-def]
        made = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # Python's handler runs at the next bytecode: here, or in put()
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        k.set_rail(rel, 5000.0, 321.0)
    monkeypatch.undo()
    assert [p for p in k.root.rglob(".tmp-*")] == []


@pytest.mark.parametrize("edit", ["clocks", "top point", "governors", "default mode's cap", "power model", "another mode"])
def test_a_tree_made_from_another_firmware_profile_is_named(tmp_path: Path, runtime_dir: Path, backend: str,
                                                            monkeypatch: pytest.MonkeyPatch, edit: str) -> None:
    """A tree rendered from one profile, run under an edited one, failed on a governor write with "Invalid
    argument; check the value against the board's tables": the fix (a new tree) went unsaid. An edit the tree
    does not render (the power model, a mode other than the default) keeps it usable. Through a `sim mount`
    the run checks the profile it loads itself: the server checked only its own, at start."""
    import contextlib
    import shutil

    from edgeexit.paths import firmware_profiles_dir

    k = make_tree(tmp_path / "t", "jetson-nano")
    before = tree(k.root)
    own = tmp_path / "profiles"
    shutil.copytree(str(firmware_profiles_dir()), str(own))
    f = own / "jetson-nano.toml"
    text = f.read_text()
    if edit == "clocks":
        text = text.replace("freq_khz = [102000,", "freq_khz = [102001,", 1)
    elif edit == "top point":
        text = text.replace(", 1479000]", "]", 1).replace(", 1090, 1090, 1090]", ", 1090, 1090]", 1)
    elif edit == "governors":
        text = text.replace('available_governors = ["interactive", "conservative", "ondemand", "userspace", "powersave", '
                            '"performance", "schedutil"]', 'available_governors = ["schedutil", "performance"]', 1)
    elif edit == "default mode's cap":
        text = text.replace('name = "MAXN"', 'name = "MAXN"\ncpu_max_khz = 1428000', 1)
    elif edit == "another mode":  # not rendered: only the default mode is applied at boot
        text = text.replace('name = "5W"\nbudget_w = 5.0', 'name = "5W-renamed"\nbudget_w = 4.5', 1)
    else:
        text = text.replace("idle_board_mw = 1250.0", "idle_board_mw = 1300.0", 1)
    assert text != f.read_text()
    f.write_text(text)
    with contextlib.ExitStack() as stack:
        # the server starts under the shipped profile; only the run sees the edited one
        root = k.root if backend == "inproc" else stack.enter_context(fuse_mount(k.root, "jetson-nano", tmp_path / "mnt"))
        monkeypatch.setenv("EDGEEXIT_FIRMWARE_PROFILES", str(own))
        p = cli("run", "--board", "jetson-nano", "--sysfs-root", str(root), "--policy", "predictive", "--deadline-ms",
                "4", "--period-ms", "10", "--limit", "5")
    if edit in ("power model", "another mode"):
        assert p.returncode == 0, p.stderr
    else:
        one_line_error(p, "was made from another firmware profile than {}".format(f),
                       "edgeexit sim init --board jetson-nano DIR")
    assert diff(before, tree(k.root)) == []
