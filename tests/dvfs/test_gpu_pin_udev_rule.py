"""A non-root user with the shipped udev rule pins the GPU on every Jetson.

The rule opens governor/min_freq/max_freq to its group, but the kernel creates userspace/set_freq on
GOV_START, root-owned 0644 [Kdfus], so no rule reaches it: edgeexit pins with min_freq/max_freq
instead and leaves the governor as it was, never in userspace without its request. Whatever it changes
comes back on success, error, Ctrl-C, SIGTERM, and by `edgeexit restore` after a SIGKILL at any write.
CI runs as root: the user is SimulatedSysfs(unprivileged=True), which refuses what root-owned nodes
without a group or other write bit refuse a user.
"""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import List

import pytest

from edgeexit.boards.config import load_board
from edgeexit.dvfs.session import BoardSession, BoardTarget, restore_board
from edgeexit.dvfs.udev import udev_rule
from edgeexit.errors import SysfsPermissionError
from edgeexit.sim.kernel import SimulatedKernel
from tests.faults.helpers import diff, fork_child, tree
from tests.sim.helpers import BOARDS, RecordingSysfs, make_tree

GPU_BOARDS = [b for b in BOARDS if load_board(b).gpu is not None]
KILLED = 9


def _udev_tree(root: Path, board: str) -> SimulatedKernel:
    """A tree as the shipped rule leaves it: its cpufreq and devfreq files group-writable."""
    k = make_tree(root, board)
    cpu_files, dev_files = (m.split() for m in re.findall(r"for f in ([a-z_ ]+); do", udev_rule()))
    assert "governor" in dev_files and "set_freq" not in " ".join(dev_files)
    for d, files in [(p.relpath, cpu_files) for p in k.board.cpu_policies] + [(_gpu(k), dev_files)]:
        for f in files:
            node = k.root / d / f
            node.chmod(node.stat().st_mode | 0o020)
    return k


def _gpu(k: SimulatedKernel) -> str:
    assert k.board.gpu is not None
    return k.board.gpu.devfreq_paths[0]


def _r(k: SimulatedKernel, rel: str) -> str:
    return (k.root / rel).read_text().strip()


def _user_session(k: SimulatedKernel, method: str = "auto") -> BoardSession:
    sysfs = RecordingSysfs(k.root, k, unprivileged=True)
    return BoardSession(BoardTarget(k.board, k.profile, sysfs, True, k), method)


def _mid(k: SimulatedKernel) -> int:
    """A GPU table entry inside the limits the tree boots with, away from both ends."""
    lo, hi = int(_r(k, _gpu(k) + "/min_freq")), int(_r(k, _gpu(k) + "/max_freq"))
    ok = [f for f in k.profile.gpu.table.freqs if lo <= f <= hi]  # type: ignore[union-attr]
    return ok[len(ok) // 2]


@pytest.mark.parametrize("board", GPU_BOARDS)
def test_udev_rule_user_pins_the_gpu_with_min_and_max(tmp_path: Path, board: str, runtime_dir: Path) -> None:
    k = _udev_tree(tmp_path / "t", board)
    before = tree(k.root)
    gov = _r(k, _gpu(k) + "/governor")
    want = _mid(k)
    with _user_session(k) as s:
        ctl, sysfs = s.controller, s.sysfs
        assert ctl.set_gpu_hz(want) == want == ctl.gpu_hz()
        assert _r(k, _gpu(k) + "/governor") == gov  # left as it was
        assert (_r(k, _gpu(k) + "/min_freq"), _r(k, _gpu(k) + "/max_freq")) == (str(want), str(want))
        govs = [v for (f, v) in sysfs.writes if f == "governor"]  # type: ignore[attr-defined]
        assert govs == ["userspace", gov]  # tried once, and put back at once
        sysfs.writes.clear()  # type: ignore[attr-defined]
        lower = max(f for f in ctl.gpu_opps_hz() if f < want)
        assert ctl.set_gpu_hz(lower) == lower  # later pins go to min/max directly: no governor write
        assert [f for (f, _) in sysfs.writes] == ["min_freq", "max_freq"]  # type: ignore[attr-defined]
        ctl.set_cpu_khz("max")  # the CPU still pins through scaling_setspeed, which the rule opens
        assert _r(k, k.board.cpu_policies[0].relpath + "/scaling_governor") == "userspace"
    assert diff(tree(k.root), before) == []
    assert not list(runtime_dir.glob("*.state.json"))


@pytest.mark.parametrize("board", GPU_BOARDS)
@pytest.mark.parametrize("raised", [ZeroDivisionError, KeyboardInterrupt])
def test_udev_rule_user_gpu_pin_is_restored_on_error_and_ctrl_c(tmp_path: Path, board: str, raised: type) -> None:
    k = _udev_tree(tmp_path / "t", board)
    before = tree(k.root)
    with pytest.raises(raised):
        with _user_session(k) as s:
            s.controller.set_gpu_hz(_mid(k))
            assert diff(tree(k.root), before) != []
            raise raised()
    assert diff(tree(k.root), before) == []


@pytest.mark.parametrize("board", GPU_BOARDS)
def test_udev_rule_user_gpu_pin_is_restored_on_sigterm(tmp_path: Path, board: str) -> None:
    k = _udev_tree(tmp_path / "t", board)
    before = tree(k.root)
    r, w = os.pipe()

    def work() -> None:
        os.close(r)
        with _user_session(k) as s:
            s.controller.set_gpu_hz(_mid(k))
            os.write(w, b"x")
            time.sleep(60)

    pid = fork_child(work)
    os.close(w)
    assert os.read(r, 1) == b"x", "the child did not pin"
    os.close(r)
    assert diff(tree(k.root), before) != []
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM
    assert diff(tree(k.root), before) == []


def _gpu_pin_kernel_writes(board: str, root: Path) -> List[str]:
    """The simulated kernel writes (file names) of a udev-rule user's first GPU pin, in order."""
    k = _udev_tree(root, board)
    seen = []  # type: List[str]
    orig = SimulatedKernel.write

    def write(self: SimulatedKernel, relpath: str, data: bytes) -> None:
        seen.append(relpath.rsplit("/", 1)[1])
        orig(self, relpath, data)

    SimulatedKernel.write = write  # type: ignore[method-assign]
    try:
        with _user_session(k) as s:
            s.controller.set_gpu_hz(_mid(k))
            n = len(seen)
    finally:
        SimulatedKernel.write = orig  # type: ignore[method-assign]
    return seen[:n]


@pytest.mark.parametrize("board", GPU_BOARDS)
def test_sigkill_at_any_write_of_the_gpu_pin_then_restore(tmp_path: Path, board: str, runtime_dir: Path) -> None:
    writes = _gpu_pin_kernel_writes(board, tmp_path / "probe")
    # governor -> userspace, set_freq refused (never reaches the kernel), governor back, then min and max
    assert writes[:2] == ["governor", "governor"] and sorted(writes[2:]) == ["max_freq", "min_freq"]
    for n in range(len(writes) + 1):  # killed before write n (n = len: after the pin, before any restore)
        k = _udev_tree(tmp_path / "t{}".format(n), board)
        before = tree(k.root)

        def work() -> None:
            orig, done = SimulatedKernel.write, [0]

            def write(self: SimulatedKernel, relpath: str, data: bytes) -> None:
                if done[0] >= n:
                    os._exit(KILLED)
                done[0] += 1
                orig(self, relpath, data)

            s = _user_session(k)
            s.__enter__()
            SimulatedKernel.write = write  # type: ignore[method-assign]
            s.controller.set_gpu_hz(_mid(k))
            os._exit(KILLED)  # no unwinding, no restore: as SIGKILL leaves it

        _, status = os.waitpid(fork_child(work), 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == KILLED, (n, status)
        assert list(runtime_dir.glob("*.state.json")), n
        restore_board(board, k.root)  # `edgeexit restore`: as root, or that user
        assert diff(tree(k.root), before) == [], n
        assert not list(runtime_dir.glob("*.state.json")), n


@pytest.mark.parametrize("board", GPU_BOARDS)
def test_explicit_userspace_method_says_set_freq_is_roots(tmp_path: Path, board: str) -> None:
    k = _udev_tree(tmp_path / "t", board)
    before = tree(k.root)
    gov = _r(k, _gpu(k) + "/governor")
    with _user_session(k, method="userspace") as s:
        with pytest.raises(SysfsPermissionError) as info:
            s.controller.set_gpu_hz(_mid(k))
        msg = str(info.value)
        assert "\n" not in msg and "run as root" in msg and "'minmax'" in msg
        assert _r(k, _gpu(k) + "/governor") == gov  # not left in userspace without a request
    assert diff(tree(k.root), before) == []


def test_a_min_max_gpu_pin_stays_under_the_nvpmodel_modes_cap(tmp_path: Path) -> None:
    """The AGX Orin boots in MODE_30W, GPU max_freq 624750000 [JS:nvp-emu]. The min/max fallback wrote the
    table top (1300500000) as max, running the GPU above the mode's cap."""
    k = _udev_tree(tmp_path / "t", "jetson-agx-orin")
    with _user_session(k, "auto") as session:
        assert session.controller.set_gpu_hz("max") == 624750000
        assert int(_r(k, _gpu(k) + "/max_freq")) == 624750000

