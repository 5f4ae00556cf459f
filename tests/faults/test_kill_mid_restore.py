"""A process killed at every write of a restore, and at every file of one simulated kernel write.

- B4: a run's own restore, or an `edgeexit restore`, killed between any two of its writes leaves
  edgeexit's own intermediate state, which the next `edgeexit restore` completes without --force;
- B5: a simulated store() killed between any two of the files it renders leaves state.json and the
  visible files agreeing (the next kernel on the tree finishes showing it), so restore sees the truth;
- A4: a store() whose render the filesystem refuses changes nothing and leaks no temporary file, and
  the refusals say the fix that fits them.

Killed children are forked and end with os._exit at the chosen write: no unwinding, no finally, no
restore, as with SIGKILL.
"""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Callable, List

import pytest

from edgeexit.boards.config import load_board
from edgeexit.dvfs import open_board
from edgeexit.dvfs.session import restore_board
from edgeexit.errors import DvfsError, SysfsPermissionError
from edgeexit.sim import kernel as sim_kernel
from edgeexit.sim.kernel import SimulatedKernel
from tests.faults.helpers import diff, fork_child, tree
from tests.sim.helpers import BOARDS, make_tree

KILLED = 9  # the exit status of a child killed at its chosen write
GPU_BOARDS = [b for b in BOARDS if load_board(b).gpu is not None]


def _in_child(work: Callable[[], None]) -> int:
    """Run ``work`` in a forked child; its exit status (0 when ``work`` returned)."""
    _, status = os.waitpid(fork_child(work), 0)
    assert os.WIFEXITED(status), status
    return os.WEXITSTATUS(status)


def _die_at_kernel_write(n: int) -> None:
    """From now on in this (child) process, die just before the simulated kernel's (n+1)th store()."""
    orig = SimulatedKernel.write
    done = [0]

    def write(self: SimulatedKernel, relpath: str, data: bytes) -> None:
        if done[0] >= n:
            os._exit(KILLED)
        done[0] += 1
        orig(self, relpath, data)

    SimulatedKernel.write = write  # type: ignore[method-assign]


def _w(k: SimulatedKernel, rel: str, value: object) -> None:
    k.write(rel, "{}\n".format(value).encode())


def _prepare(k: SimulatedKernel, pre: str) -> None:
    """Non-default states a restore has to work its way back to."""
    if pre == "gpu-userspace-top":  # no request, at the top: two governor writes and more to come back
        g = k.board.gpu.devfreq_paths[0]  # type: ignore[union-attr]
        _w(k, g + "/governor", "performance")
        _w(k, g + "/governor", "userspace")
    elif pre == "cpu-userspace":
        pol = k.board.cpu_policies[0]
        table = k.profile.cpu_table(pol.name).freqs
        _w(k, pol.relpath + "/scaling_governor", "userspace")
        _w(k, pol.relpath + "/scaling_setspeed", table[len(table) // 2])


CASES = [(b, "default") for b in BOARDS] + [(b, "cpu-userspace") for b in BOARDS] + \
    [(b, "gpu-userspace-top") for b in GPU_BOARDS]


def _killed_at_each_write_then_restored(tmp_path: Path, board: str, pre: str, runtime_dir: Path,
                                       child_for: Callable[[int, SimulatedKernel], Callable[[], None]]) -> None:
    """For n = 0, 1, ...: a fresh tree in state ``pre``, then ``child_for(n, kernel)`` run in a child that
    dies at a restore's (n+1)th kernel write, then `edgeexit restore` (no --force: all it finds is
    edgeexit's own doing); until a child's restore finishes. The tree must come back byte for byte each
    time, with no state file left, and the restore must have been killed at least once."""
    n = 0
    while True:
        k = make_tree(tmp_path / "t{}".format(n), board)
        _prepare(k, pre)
        before = tree(k.root)
        code = _in_child(child_for(n, k))
        if code == 0:
            assert diff(tree(k.root), before) == []
            break
        assert code == KILLED
        assert restore_board(board, k.root)["restored"], "kill after restore write {}".format(n)
        assert diff(tree(k.root), before) == [], "kill after restore write {}".format(n)
        assert not list(runtime_dir.glob("*.state.json*"))
        n += 1
    assert n >= 1


@pytest.mark.parametrize("board,pre", CASES)
def test_a_runs_restore_killed_at_any_write_is_completed_by_edgeexit_restore(tmp_path: Path, board: str, pre: str,
                                                                             runtime_dir: Path) -> None:
    def child_for(n: int, k: SimulatedKernel) -> Callable[[], None]:
        def run() -> None:
            with open_board(board, sysfs_root=k.root) as s:
                s.controller.set_cpu_khz("min")
                if s.controller.gpu is not None:
                    s.controller.set_gpu_hz("min")
                _die_at_kernel_write(n)  # the writes from here on are the restore's
        return run

    _killed_at_each_write_then_restored(tmp_path, board, pre, runtime_dir, child_for)


@pytest.mark.parametrize("board,pre", CASES)
def test_edgeexit_restore_killed_at_any_write_is_completed_by_the_next(tmp_path: Path, board: str, pre: str,
                                                                      runtime_dir: Path) -> None:
    def child_for(n: int, k: SimulatedKernel) -> Callable[[], None]:
        def pinned_then_killed() -> None:
            with open_board(board, sysfs_root=k.root) as s:
                s.controller.set_cpu_khz("max")
                if s.controller.gpu is not None:
                    s.controller.set_gpu_hz("max")
                os._exit(KILLED)

        assert _in_child(pinned_then_killed) == KILLED

        def restore_killed() -> None:
            _die_at_kernel_write(n)
            restore_board(board, k.root)
        return restore_killed

    _killed_at_each_write_then_restored(tmp_path, board, pre, runtime_dir, child_for)


# --- B5: one simulated store() killed between its files ------------------------------------------------
def _die_at_put(n: int) -> None:
    """In this (child) process, die just before the simulated kernel's (n+1)th file put."""
    orig = SimulatedKernel.put
    done = [0]

    def put(self: SimulatedKernel, rel: str, content: str, mode: int = sim_kernel.RO) -> None:
        if done[0] >= n:
            os._exit(KILLED)
        done[0] += 1
        orig(self, rel, content, mode)

    SimulatedKernel.put = put  # type: ignore[method-assign]


def _stores(board: str) -> List[Callable[[SimulatedKernel], None]]:
    cfg = load_board(board)
    pol = cfg.cpu_policies[0].relpath
    out = [lambda k: _w(k, pol + "/scaling_governor", "userspace")]  # type: List[Callable[[SimulatedKernel], None]]
    if cfg.gpu is not None:
        g = cfg.gpu.devfreq_paths[0]
        out.append(lambda k: _w(k, g + "/governor", "userspace"))
    return out


def _agrees(root: Path) -> None:
    """What the visible files show is what state.json says, and nothing half made is left."""
    k = SimulatedKernel(root)  # the next kernel on the tree: finishes a store() a kill interrupted
    shown = tree(root)
    state = k.load_state()
    assert sim_kernel.RENDER_PENDING not in state
    k.render(state)
    assert diff(tree(root), shown) == [], "the visible files and state.json disagree"
    assert not [p for p in root.rglob(".tmp-*")], "a temporary file was left"


@pytest.mark.parametrize("board", BOARDS)
def test_a_simulated_write_killed_at_any_file_leaves_files_and_state_agreeing(tmp_path: Path, board: str) -> None:
    for i, store in enumerate(_stores(board)):
        n = 0
        while True:
            k = make_tree(tmp_path / "t{}-{}".format(i, n), board)

            def killed() -> None:
                _die_at_put(n)
                store(k)

            code = _in_child(killed)
            _agrees(k.root)
            if code == 0:
                break
            assert code == KILLED
            n += 1
        assert n >= 2


@pytest.mark.parametrize("board", BOARDS)
def test_a_run_killed_inside_a_simulated_write_is_restored(tmp_path: Path, board: str, runtime_dir: Path) -> None:
    """The auditor's case: killed after the kernel saved its state but before the governor showed."""
    n = 0
    while n < 6:
        k = make_tree(tmp_path / "t{}".format(n), board)
        before = tree(k.root)

        def killed() -> None:
            with open_board(board, sysfs_root=k.root) as s:
                _die_at_put(n)
                s.controller.set_cpu_khz("max")
            os._exit(0)

        assert _in_child(killed) == KILLED
        restore_board(board, k.root)
        assert diff(tree(k.root), before) == [], "kill at file {} of the first pin write".format(n)
        n += 1


# --- A4: refused renders and refused writes -------------------------------------------------------------
@pytest.mark.parametrize("board", BOARDS)
def test_a_write_whose_render_is_refused_changes_nothing(tmp_path: Path, board: str) -> None:
    """A file of the render cannot be replaced (here a directory stands where scaling_cur_freq was; an
    immutable file, chattr +i, fails the same way with EPERM): the store() fails with that errno, state.json
    and every visible file stay as they were, and no .tmp- file is left."""
    k = make_tree(tmp_path / "t", board)
    pol = k.board.cpu_policies[0].relpath
    cur = k.root / pol / "scaling_cur_freq"
    cur.unlink()
    (cur / "sub").mkdir(parents=True)
    before = tree(k.root)
    with pytest.raises(OSError) as info:
        _w(k, pol + "/scaling_governor", "userspace")
    assert info.value.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
    assert diff(tree(k.root), before) == []
    assert json.loads((k.root / ".edgeexit-sim/state.json").read_text())["cpufreq"][
        k.board.cpu_policies[0].name]["governor"] != "userspace"
    assert not list(k.root.rglob(".tmp-*"))


FIXES = {
    "EPERM": (SysfsPermissionError, ["EPERM", "edgeexit boards --udev-rule", "immutable"]),
    "EROFS": (SysfsPermissionError, ["read-only", "--privileged"]),
    "EISDIR": (DvfsError, ["is not a file", "--board"]),
    "ENOTDIR": (DvfsError, ["is not a file", "--board"]),
    "EINVAL": (DvfsError, ["check the value against the board's tables"]),
    "EBUSY": (DvfsError, ["run again"]),
}


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("name", sorted(FIXES))
def test_a_refused_write_names_the_fix_for_its_errno(tmp_path: Path, board: str, name: str,
                                                     runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    before = tree(k.root)
    k.inject_error(k.board.cpu_policies[0].relpath + "/scaling_governor", name)
    kind, needles = FIXES[name]
    with pytest.raises(kind) as info:
        with open_board(board, sysfs_root=k.root) as s:
            s.controller.set_cpu_khz("max")
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg
    if name != "EINVAL":
        assert "board's tables" not in msg, msg
    assert "\n" not in msg
    assert diff(tree(k.root), before) == []  # the injected fault was consumed; nothing else changed
    assert not list(runtime_dir.glob("*.state.json*"))


@pytest.mark.parametrize("board", ["jetson-nano", "raspberry-pi-5"])
def test_restore_sets_a_killed_runs_sensors_idle_when_no_clock_was_saved(tmp_path: Path, board: str,
                                                                       runtime_dir: Path) -> None:
    """A review SIGKILLed a run that pinned nothing (host clocks; a Pi 5 --dvfs governor run): `restore` found no
    state file, said 'nothing to restore', and left the rails reading the load (2602 mW against 1419 idle)."""
    from edgeexit.energy import meter_for_board
    from edgeexit.sim.kernel import SimulatedKernel
    from edgeexit.sim.vcgencmd import simulated_vcgencmd

    root = tmp_path / "t"
    make_tree(root, board)
    with open_board(board, sysfs_root=root):
        pass  # a clean session ends with the sensors idle
    k = SimulatedKernel(root)
    cfg = load_board(board)

    def total_mw() -> float:
        m = meter_for_board(cfg.power, root=root, runner=simulated_vcgencmd(root) if board == "raspberry-pi-5" else None)
        return float(m.read().total_mw)

    idle = total_mw()
    for rail in cfg.power.rails():  # what a killed run leaves: every rail at load
        k.set_rail(rail, 5000.0, 900.0)
    assert total_mw() > idle * 1.2
    report = restore_board(board, sysfs_root=root)
    assert not report["restored"]
    assert total_mw() == pytest.approx(idle)
