"""A board session's life as a library user meets it: writes only while it is open (entered and not yet
closed), close is idempotent, and a --simulate tree goes with its session however that ends."""
from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path

import pytest

from edgeexit.boards.config import load_board
from edgeexit.dvfs import open_board
from edgeexit.dvfs.controller import DvfsController
from edgeexit.errors import BoardBusyError, BoardConfigError, DvfsError, ThermalError
from edgeexit.sim.sysfs import SimulatedSysfs
from tests.sim.helpers import make_tree, snapshot


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_a_closed_session_writes_nothing(tmp_path: Path, runtime_dir: Path) -> None:
    """A session still pinned after its `with` block: no lock, no saved state, and nothing ever restored
    it (the governor stayed userspace)."""
    make_tree(tmp_path / "t", "jetson-nano")
    before = snapshot(tmp_path / "t")
    with open_board("jetson-nano", sysfs_root=tmp_path / "t") as session:
        session.controller.set_cpu_khz(921600)
    with pytest.raises(DvfsError, match="session is closed.*with open_board"):
        session.controller.set_cpu_khz(1479000)
    session.close()  # again: nothing to do
    with pytest.raises(DvfsError, match="session is closed; open a new one"):
        session.__enter__()
    assert snapshot(tmp_path / "t") == before
    assert not list(runtime_dir.glob("*.state.json"))


def test_a_session_never_entered_writes_nothing(tmp_path: Path, runtime_dir: Path) -> None:
    make_tree(tmp_path / "t", "jetson-nano")
    before = snapshot(tmp_path / "t")
    session = open_board("jetson-nano", sysfs_root=tmp_path / "t")
    with pytest.raises(DvfsError, match="session is not open.*with open_board"):
        session.controller.set_cpu_khz(921600)
    with pytest.raises(DvfsError, match="session is not open"):
        session.controller.set_cpu_khz(921600)  # still refused: the refusal armed nothing
    assert snapshot(tmp_path / "t") == before
    assert not list(runtime_dir.glob("*.state.json"))
    with session:  # entering it after all works, and restores
        session.controller.set_cpu_khz(921600)
    assert snapshot(tmp_path / "t") == before


def test_a_failed_save_arms_nothing() -> None:
    """The first write saves the board's state first; when that save failed, the next write went ahead
    unsaved (the controller counted itself armed before the save)."""
    calls = []

    def save() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise DvfsError("state file cannot be written")

    with tempfile.TemporaryDirectory() as tmp:
        k = make_tree(Path(tmp) / "t", "jetson-nano")
        ctl = DvfsController(load_board("jetson-nano"), SimulatedSysfs(k.root, k), save)
        with pytest.raises(DvfsError, match="cannot be written"):
            ctl.set_cpu_khz(921600)
        ctl.set_cpu_khz(921600)
    assert len(calls) == 2


def test_a_simulated_tree_goes_with_its_session(private_tmp: Path) -> None:
    trees = lambda: list(private_tmp.glob("edgeexit-sim-*"))  # noqa: E731
    open_board("jetson-nano", simulate=True).close()  # never entered
    assert trees() == []
    session = open_board("jetson-nano", simulate=True)
    assert len(trees()) == 1
    del session  # dropped, never entered or closed
    gc.collect()
    assert trees() == []
    with pytest.raises(DvfsError, match="unknown pin method"):
        open_board("jetson-nano", simulate=True, method="bogus")
    with pytest.raises(ThermalError, match="'hot' m°C is not plausible"):
        open_board("jetson-nano", simulate=True, thermal_limit_mc="hot")  # type: ignore[arg-type]
    assert trees() == []
    with open_board("jetson-nano", simulate=True) as session:
        session.controller.set_cpu_khz("max")
    assert trees() == []


def test_bad_board_arguments_are_edgeexit_errors(tmp_path: Path) -> None:
    with pytest.raises(BoardConfigError, match="5 is not a board name"):
        open_board(5, simulate=True)  # type: ignore[arg-type]
    make_tree(tmp_path / "t", "jetson-nano")
    with open_board("jetson-nano", sysfs_root=tmp_path / "t"):
        with pytest.raises(BoardBusyError, match="already open in this process.*close that session first"):
            with open_board("jetson-nano", sysfs_root=tmp_path / "t"):
                pass


def test_a_forked_child_leaves_its_parents_tree(private_tmp: Path) -> None:
    """A child made with os.fork inherits the tree's finalizer: its normal exit deleted the parent's live tree."""
    import os

    for enter in (False, True):
        session = open_board("jetson-nano", simulate=True)
        if enter:
            session.__enter__()
        pid = os.fork()
        if pid == 0:  # the child: a normal exit runs atexit, and with it the finalizers it inherited
            import atexit

            atexit._run_exitfuncs()
            os._exit(0)  # not through pytest's own shutdown in a forked child
        os.waitpid(pid, 0)
        assert session.root.is_dir(), "the child deleted the parent's tree (entered: {})".format(enter)
        session.close()
        assert not list(private_tmp.glob("edgeexit-sim-*"))


def test_an_entered_session_left_unclosed_is_swept_with_its_lock_and_state(private_tmp: Path, runtime_dir: Path) -> None:
    """A process that ends inside a session (no close) leaves the tree, its lock and its state file to the next
    sweep; deleting the tree alone at exit left the lock and state file for ever."""
    import subprocess
    import sys

    code = ("from edgeexit.dvfs import open_board\ns = open_board('jetson-nano', simulate=True)\ns.__enter__()\n"
            "s.controller.set_cpu_khz('max')\n")
    env = dict(__import__("os").environ, TMPDIR=str(private_tmp))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert len(list(private_tmp.glob("edgeexit-sim-*"))) == 1
    assert list(runtime_dir.glob("*.state.json")) and list(runtime_dir.glob("*.lock"))
    from edgeexit.dvfs.state import sweep_killed_simulations

    assert sweep_killed_simulations(min_age_s=0) == 1
    assert not list(private_tmp.glob("edgeexit-sim-*")) and not list(runtime_dir.iterdir())


def test_a_process_killed_before_entering_leaves_its_tree_to_the_sweep(private_tmp: Path, runtime_dir: Path) -> None:
    """A SIGKILL between making a --simulate tree and entering its session left a tree with no lock, which
    the sweep skipped for ever (it could not tell it from one still being set up). The maker's claim can."""
    import subprocess
    import sys

    from edgeexit.dvfs.state import sweep_killed_simulations

    code = ("import os, signal\nfrom edgeexit.dvfs import open_board\ns = open_board('jetson-nano', simulate=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    env = dict(__import__("os").environ, TMPDIR=str(private_tmp))
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == -9
    killed = list(private_tmp.glob("edgeexit-sim-*"))
    assert len(killed) == 1 and not list(runtime_dir.glob("*"))  # no lock: the runtime dir is not even made
    live = open_board("jetson-nano", simulate=True)  # made here, not entered: its maker is alive
    assert sweep_killed_simulations(min_age_s=0) == 1
    assert not killed[0].exists() and live.root.is_dir()
    with live:  # and still works
        live.controller.set_cpu_khz("max")
    assert not list(private_tmp.glob("edgeexit-sim-*")) and not list(runtime_dir.glob("*"))


def test_a_closed_simulated_session_says_it_is_closed(private_tmp: Path) -> None:
    """Its tree is gone: the write used to fail reading the table, 'this kernel does not match the board config'."""
    from edgeexit.bundle import load_bundle
    from edgeexit.execute import execute
    from edgeexit.policies import make_policy
    from edgeexit.runtime import Runtime

    with open_board("jetson-nano", simulate=True) as session:
        pass
    never = open_board("jetson-nano", simulate=True)
    never.close()
    for s in (session, never):
        for pin in (lambda: s.controller.set_cpu_khz("max"), lambda: s.controller.set_gpu_hz("min")):
            with pytest.raises(DvfsError, match="session is closed"):
                pin()
    b = load_bundle()
    with Runtime(b) as rt:
        with pytest.raises(DvfsError, match="session is closed; run inside `with open_board"):
            execute(b, rt, make_policy("full", b), b.split("evaluation").take(2), session=session)


def test_a_run_with_another_runtime_dir_is_kept_off_the_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: two runs on one board with two EDGEEXIT_RUNTIME_DIRs (or two containers sharing /sys) both took it;
    the first then warned of someone else's change and left it, the second restored the first's pin as the board's
    own: the board stayed at userspace 921600, with no state file for `edgeexit restore`."""
    import subprocess
    import sys

    from edgeexit.dvfs import open_board
    from tests.sim.helpers import make_tree

    k = make_tree(tmp_path / "t", "jetson-nano")
    monkeypatch.setenv("EDGEEXIT_RUNTIME_DIR", str(tmp_path / "rt-a"))
    with open_board("jetson-nano", k.root) as session:
        session.controller.set_cpu_khz(921600)
        env = dict(os.environ, EDGEEXIT_RUNTIME_DIR=str(tmp_path / "rt-b"))
        p = subprocess.run([sys.executable, "-m", "edgeexit", "run", "--board", "jetson-nano", "--sysfs-root", str(k.root),
                            "--cpu-khz", "1428000", "--limit", "2"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
        assert p.returncode != 0
        assert p.stderr.strip().splitlines() == [
            "edgeexit: error: board jetson-nano is in use by another edgeexit run (pid {}) that keeps its lock in another "
            "runtime directory (EDGEEXIT_RUNTIME_DIR, or another container's /run); wait for it to finish or stop that "
            "process".format(os.getpid())], p.stderr
        assert session.controller.cpus[0].current() == 921600  # the second run wrote nothing
    assert (k.root / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor").read_text().strip() == "schedutil"
    # released with the session: the next run, in any runtime dir, takes the board
    q = subprocess.run([sys.executable, "-m", "edgeexit", "run", "--board", "jetson-nano", "--sysfs-root", str(k.root),
                        "--cpu-khz", "max", "--limit", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=300)
    assert q.returncode == 0, q.stderr
