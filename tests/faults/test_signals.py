"""SIGKILL at random points of `edgeexit run` then `edgeexit restore`, and SIGTERM: after each the
simulated tree equals the original byte for byte and the JSONL output parses line by line. A killed
`--simulate` run's private tree is swept by the next `--simulate` session."""
from __future__ import annotations

import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Tuple

import pytest

from edgeexit.dvfs.state import state_path, sweep_killed_simulations
from tests.faults.helpers import check_jsonl, cli, diff, fork_child, one_line_error, start_run, tree, wait_for_lines
from tests.sim.helpers import chown_tree, fork_as, fuse_mount, make_tree

SEED = 8  # issue 8: fixed, so a failure reproduces
KILL_POINTS = 6


def _kill_at_random_points(root: Path, backing: Path, work: Path, rng: random.Random) -> None:
    before = tree(backing)
    for i in range(KILL_POINTS):
        out = work / "out{}.jsonl".format(i)
        khz = rng.choice(["102000", "921600", "1479000", "max"])
        proc = start_run(root, out, "--cpu-khz", khz, "--gpu-hz", "min")
        if i % 2 == 0:
            time.sleep(rng.uniform(0.0, 1.2))  # anywhere: start-up, pinning, or inferring
        else:
            wait_for_lines(out, rng.randint(1, 400), proc)  # certainly pinned, mid-run
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
        check_jsonl(out)
        res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root))
        assert res.returncode == 0, res.stderr
        assert diff(tree(backing), before) == [], "kill point {} left the tree changed".format(i)


def test_sigkill_at_random_points_then_restore(tmp_path: Path) -> None:
    make_tree(tmp_path / "t", "jetson-nano")
    _kill_at_random_points(tmp_path / "t", tmp_path / "t", tmp_path, random.Random(SEED))


@pytest.mark.fuse
def test_sigkill_at_random_points_through_fuse(tmp_path: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    with fuse_mount(k.root, "jetson-nano", tmp_path / "mnt") as mnt:
        _kill_at_random_points(mnt, k.root, tmp_path, random.Random(SEED + 1))


def test_sigterm_restores_and_leaves_valid_jsonl(tmp_path: Path, runtime_dir: Path) -> None:
    make_tree(tmp_path / "t", "jetson-nano")
    before = tree(tmp_path / "t")
    out = tmp_path / "out.jsonl"
    proc = start_run(tmp_path / "t", out, "--cpu-khz", "max", "--gpu-hz", "min")
    wait_for_lines(out, 50, proc)
    assert diff(tree(tmp_path / "t"), before) != []  # pinned while running
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    _, err = proc.communicate()
    assert "Traceback" not in err
    assert diff(tree(tmp_path / "t"), before) == []
    assert not list(runtime_dir.glob("*.state.json"))
    assert len(check_jsonl(out)) >= 50


def test_a_killed_simulate_run_leaves_nothing_for_long(tmp_path: Path, runtime_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A SIGKILLed --simulate run cannot delete its private tree, lock and state file; the next --simulate
    # session does, once the tree is a minute old and no live run holds its lock.
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "edgeexit", "run", "--board", "jetson-nano", "--simulate", "--cpu-khz", "max",
           "--output", str(out)]
    killed = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
    wait_for_lines(out, 20, killed)
    killed.kill()
    killed.communicate(timeout=30)
    left = list(tmpdir.glob("edgeexit-sim-jetson-nano-*"))
    assert len(left) == 1 and list(runtime_dir.glob("*.state.json")) and list(runtime_dir.glob("*.lock"))

    live = subprocess.Popen(cmd[:-2] + ["--output", str(tmp_path / "live.jsonl")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, universal_newlines=True)
    try:
        wait_for_lines(tmp_path / "live.jsonl", 20, live)
        assert sweep_killed_simulations(min_age_s=0) == 1  # the killed run's, not the live one's
        assert not left[0].exists() and len(list(tmpdir.glob("edgeexit-sim-*"))) == 1
        assert len(list(runtime_dir.glob("*.state.json"))) == 1  # the live run's own
    finally:
        live.kill()
        live.communicate(timeout=30)
    # The CLI path: a fresh session sweeps trees older than a minute.
    for stale in tmpdir.glob("edgeexit-sim-*"):
        os.utime(str(stale), (time.time() - 120, time.time() - 120))
    assert cli("run", "--board", "jetson-nano", "--simulate", "--limit", "1").returncode == 0
    assert not list(tmpdir.glob("edgeexit-sim-*"))
    assert not list(runtime_dir.glob("*.state.json")) and not list(runtime_dir.glob("*.lock"))


@pytest.mark.parametrize("board", ["raspberry-pi-5", "jetson-orin-nano"])
def test_restore_after_sigkill_shows_the_idle_board_on_the_sensors(tmp_path: Path, board: str) -> None:
    # The killed run left its load (perhaps half published) on the simulated sensors; once `edgeexit
    # restore` has put the clocks back they read the idle board again: the whole tree, measurements too.
    from tests.sim.helpers import snapshot

    make_tree(tmp_path / "t", board)
    before = snapshot(tmp_path / "t")
    out = tmp_path / "out.jsonl"
    proc = start_run(tmp_path / "t", out, "--cpu-khz", "max", "--threads", "4", board=board)
    wait_for_lines(out, 300, proc)
    proc.kill()
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    assert diff(snapshot(tmp_path / "t"), before) != []
    res = cli("restore", "--board", board, "--sysfs-root", str(tmp_path / "t"))
    assert res.returncode == 0, res.stderr
    assert diff(snapshot(tmp_path / "t"), before) == []


def test_ctrl_c_again_during_the_restore_waits_for_it(tmp_path: Path) -> None:
    """Ctrl-C every 50 us from mid-run until the restore is done (a user pressing it again and again):
    the first interrupts the run, the rest wait until the board is back. The second used to stop the
    restore halfway, clocks left pinned."""
    from edgeexit.dvfs import open_board

    root = tmp_path / "t"
    make_tree(root, "jetson-nano")
    before = tree(root)
    sessions = []

    def press_ctrl_c(signum: int, frame: object) -> None:
        if sessions and sessions[0]._snapshot is not None:  # until the restore has finished
            os.kill(os.getpid(), signal.SIGINT)

    old = signal.signal(signal.SIGALRM, press_ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            with open_board("jetson-nano", root) as session:
                session.controller.set_cpu_khz("max")
                session.controller.set_gpu_hz("min")
                assert diff(tree(root), before) != []
                sessions.append(session)
                signal.setitimer(signal.ITIMER_REAL, 50e-6, 50e-6)
                time.sleep(5)  # interrupted here
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert diff(tree(root), before) == []


def _nobody() -> Tuple[int, int]:
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _as_nobody(work: Callable[[], int]) -> int:
    """Fork ``work`` as 'nobody', outside this test's runtime dir (its state goes to nobody's own); the pid."""
    def child() -> int:
        for var in ("EDGEEXIT_RUNTIME_DIR", "XDG_RUNTIME_DIR"):
            os.environ.pop(var, None)
        return work()

    return fork_as(_nobody(), child)


def _nobody_pins(root: Path, then: str, ready_fd: int = -1) -> int:
    """Fork a child that, as 'nobody', opens the board at ``root``, pins the clocks, and is SIGKILLed
    (``then="die"``) or waits to be (``"wait"``)."""
    from edgeexit.dvfs import open_board

    def pin() -> int:
        session = open_board("jetson-nano", root)
        session.__enter__()
        session.controller.set_cpu_khz("max")
        session.controller.set_gpu_hz("min")
        if then == "wait":
            os.write(ready_fd, b"x")
            time.sleep(60)
        os.kill(os.getpid(), signal.SIGKILL)
        return 99

    return _as_nobody(pin)


@pytest.fixture
def nobody_tree() -> Iterator[Path]:
    """A Jetson Nano tree owned by 'nobody' (CI runs as root), and that user's state files cleaned after."""
    assert os.geteuid() == 0, "this test runs a board session as another user, so it needs root (CI runs as root)"
    top = Path(tempfile.mkdtemp(prefix="edgeexit-owner-"))
    root = top / "t"
    make_tree(root, "jetson-nano")
    chown_tree(top, _nobody())
    nobodys = Path("/tmp/edgeexit-{}".format(_nobody()[0]))
    made = not nobodys.exists()
    try:
        yield root
    finally:
        key = os.path.basename(str(state_path("jetson-nano", root))).split(".")[0]
        for left in nobodys.glob(key + ".*"):
            left.unlink()
        if made:  # the runtime dir nobody's session made: nothing of the test's is left on the machine
            shutil.rmtree(str(nobodys), ignore_errors=True)
        shutil.rmtree(str(top), ignore_errors=True)


def test_restore_finds_a_run_another_user_left(nobody_tree: Path, tmp_path: Path) -> None:
    """State lives per user (/run/edgeexit for root, /tmp/edgeexit-<uid> otherwise): a run made through the
    udev rule and SIGKILLed was invisible to `sudo edgeexit restore` ("nothing to restore"), and the next
    root run took the pinned clocks for the board's own. A copy of that file in a directory its uid does not
    own (anyone can make /tmp/edgeexit-54321) is not trusted."""
    root = nobody_tree
    before = tree(root)
    os.waitpid(_nobody_pins(root, "die"), 0)
    left = list(Path("/tmp/edgeexit-{}".format(_nobody()[0])).glob("jetson-nano-*.state.json"))
    mine = [f for f in left if f.name == state_path("jetson-nano", root).name]
    assert len(mine) == 1 and diff(tree(root), before) != []
    forged = Path("/tmp/edgeexit-54321")
    forged.mkdir(mode=0o700)
    try:
        shutil.move(str(mine[0]), str(forged / mine[0].name))  # root owns the directory, not uid 54321
        res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root))
        assert res.returncode == 0 and "nothing to restore" in res.stdout + res.stderr
        shutil.move(str(forged / mine[0].name), str(mine[0]))
        os.chown(str(mine[0]), _nobody()[0], -1)
    finally:
        shutil.rmtree(str(forged), ignore_errors=True)
    res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root))  # root's own runtime dir has nothing
    assert res.returncode == 0, res.stderr
    assert "nothing to restore" not in res.stdout + res.stderr
    assert diff(tree(root), before) == [] and not mine[0].exists()


def test_a_live_run_of_another_user_is_not_restored_underneath_it(nobody_tree: Path) -> None:
    root = nobody_tree
    before = tree(root)
    r, w = os.pipe()
    pid = _nobody_pins(root, "wait", w)
    try:
        assert os.read(r, 1) == b"x"
        pinned = tree(root)
        # Locks live per user, so root's restore used to put the board back under the live run, and a root run
        # to pin it: both now see the other user's lock.
        for cmd in (("restore",), ("run", "--cpu-khz", "102000", "--limit", "1")):
            res = cli(*cmd, "--board", "jetson-nano", "--sysfs-root", str(root))
            one_line_error(res, "in use by another user's edgeexit run", "pid {}".format(pid))
            assert tree(root) == pinned
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    assert cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root)).returncode == 0
    assert diff(tree(root), before) == []


def test_another_users_run_sees_roots_lock(nobody_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root's lock used to sit in a 0700 directory as a 0600 file: a udev-rule user's run could not see it
    and pinned the board under root's run."""
    from edgeexit.dvfs import open_board
    from edgeexit.errors import BoardBusyError

    root_dir = Path("/tmp/edgeexit-0")  # root's runtime dir as another user finds it
    made = not root_dir.exists()
    monkeypatch.setenv("EDGEEXIT_RUNTIME_DIR", str(root_dir))

    def theirs() -> int:
        try:
            with open_board("jetson-nano", nobody_tree) as session:
                session.controller.set_cpu_khz(102000)
        except BoardBusyError as err:
            return 0 if "in use by another user's edgeexit run" in str(err) else 2
        return 1

    try:
        with open_board("jetson-nano", nobody_tree) as session:
            session.controller.set_cpu_khz("max")
            _, status = os.waitpid(_as_nobody(theirs), 0)
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        for f in root_dir.glob(state_path("jetson-nano", nobody_tree).name.split(".")[0] + ".*"):
            f.unlink()
        if made:
            shutil.rmtree(str(root_dir), ignore_errors=True)


def test_status_names_a_killed_runs_saved_state(tmp_path: Path, runtime_dir: Path) -> None:
    """After a SIGKILL, `status` showed the pinned clocks as if they were the board's own, with no word of the
    saved state waiting for `edgeexit restore`; a live run's state is not listed."""
    import json

    make_tree(tmp_path / "t", "jetson-nano")
    where = ["--board", "jetson-nano", "--sysfs-root", str(tmp_path / "t")]
    out = tmp_path / "out.jsonl"
    proc = start_run(tmp_path / "t", out, "--cpu-khz", "max")
    try:
        wait_for_lines(out, 5, proc)
        live = cli("status", *where, "--json")
        assert live.returncode == 0 and json.loads(live.stdout)["unfinished_state_files"] == [], live.stderr
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    killed = cli("status", *where)
    assert killed.returncode == 0 and "a run that did not finish left its saved clocks in" in killed.stdout
    assert "edgeexit restore --board jetson-nano --sysfs-root" in killed.stdout
    assert cli("restore", *where).returncode == 0
    assert json.loads(cli("status", *where, "--json").stdout)["unfinished_state_files"] == []


def test_ctrl_c_in_a_command_is_one_line(tmp_path: Path) -> None:
    """click printed a blank line before its Abort: Ctrl-C during `calibrate` left two lines on stderr."""
    from edgeexit.paths import demo_bundle_dir

    shutil.copytree(str(demo_bundle_dir()), str(tmp_path / "b"))
    proc = subprocess.Popen([sys.executable, "-m", "edgeexit", "calibrate", "--model", str(tmp_path / "b")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    time.sleep(4)  # importing, loading, fitting
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "edgeexit: interrupted\n", repr(err)


@pytest.mark.parametrize("where", ["before", "during"])
def test_ctrl_c_in_restore_says_whether_it_finished(tmp_path: Path, runtime_dir: Path, where: str) -> None:
    """A Ctrl-C before `edgeexit restore` reached the board left the saved state unrestored, and the line said
    only "interrupted": it now says to run `restore` again. One held during the restore still lets it finish."""
    from edgeexit.cli import main
    from edgeexit.dvfs import open_board, session as dvfs_session

    root = tmp_path / "t"
    make_tree(root, "jetson-nano")
    before = tree(root)

    def pinned_then_killed() -> None:
        with open_board("jetson-nano", sysfs_root=root) as s:
            s.controller.set_cpu_khz("max")
            os._exit(0)  # SIGKILL-like: no restore, the state file stays

    os.waitpid(fork_child(pinned_then_killed), 0)
    assert diff(tree(root), before) != []
    err_file = tmp_path / "stderr"

    def restore_with_ctrl_c() -> None:
        def interrupt(orig: Callable[..., object]) -> Callable[..., object]:
            def call(*args: object, **kwargs: object) -> object:
                signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, delivered by Python's own handler
                return orig(*args, **kwargs)
            return call

        if where == "before":
            dvfs_session.resolve_target = interrupt(dvfs_session.resolve_target)  # type: ignore[assignment]
        else:
            cls = dvfs_session.BoardSession
            cls.restore_stale = interrupt(cls.restore_stale)  # type: ignore[method-assign]
        sys.stderr = open(str(err_file), "w", buffering=1)  # line-buffered: the child ends in os._exit
        main(["restore", "--board", "jetson-nano", "--sysfs-root", str(root)])

    _, status = os.waitpid(fork_child(restore_with_ctrl_c), 0)
    assert os.WEXITSTATUS(status) == 130
    lines = err_file.read_text().splitlines()
    assert len(lines) == 1, lines
    if where == "before":
        assert "run `edgeexit restore` again" in lines[0], lines
        assert diff(tree(root), before) != []
        assert cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root)).returncode == 0
    else:
        assert lines[0] == "edgeexit: interrupted"
    assert diff(tree(root), before) == []
