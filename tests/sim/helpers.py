"""Shared test helpers: simulated trees, FUSE mounts, and whole-tree snapshots."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple, Union

import pytest

from edgeexit.boards.config import board_names, load_board
from edgeexit.sim.kernel import SimulatedKernel
from edgeexit.sim.sysfs import SimulatedSysfs

BOARDS = board_names()  # every shipped board config, never a hard-coded list


class RecordingSysfs(SimulatedSysfs):
    """The simulated kernel, remembering the writes that reached it, in order: (file name, value)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.writes = []  # type: List[Tuple[str, str]]

    def write(self, relpath: str, value: Union[str, int]) -> None:
        super().write(relpath, value)
        self.writes.append((relpath.rsplit("/", 1)[1], str(value)))


def make_tree(root: Path, board: str) -> SimulatedKernel:
    return SimulatedKernel.create(root, load_board(board))


def within_limits(k: SimulatedKernel, policy: int = 0) -> List[int]:
    """The policy's table entries within the limits its tree shows now: where a userspace request is not
    clamped (at boot, the default nvpmodel mode's floor and cap: Orin Nano MIN_FREQ 729600)."""
    pol = k.board.cpu_policies[policy]
    lo, hi = (int((k.root / pol.relpath / f).read_text()) for f in ("scaling_min_freq", "scaling_max_freq"))
    return [f for f in k.profile.cpu_table(pol.name).freqs if lo <= f <= hi]


def chown_tree(top: Path, owner: Tuple[int, int]) -> None:
    """``chown -R`` (symlinks themselves, not their targets): hand a simulated tree to another user."""
    for dirpath, dirnames, filenames in os.walk(str(top)):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            os.lchown(name, *owner)


def fork_as(owner: Tuple[int, int], work: Callable[[], int]) -> int:
    """Fork a child that runs ``work`` with ``owner``'s uid/gid and exits with its return value; returns
    the child's pid (the caller waits for it)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setgid(owner[1])
            os.setuid(owner[0])
            code = work()
        finally:
            os._exit(code)
    return pid


def snapshot(root: Path) -> Dict[str, bytes]:
    """relpath -> bytes for every file (symlinks as their target) under ``root``."""
    out = {}  # type: Dict[str, bytes]
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, str(root))
            if os.path.islink(full):
                out[rel] = b"-> " + os.readlink(full).encode()
            elif os.path.isfile(full):
                with open(full, "rb") as fh:
                    out[rel] = fh.read()
    return out


def require_fuse() -> None:
    """FUSE tests never skip: without FUSE they fail and say what to install."""
    from edgeexit.sim.fusefs import fuse_problem

    problem = fuse_problem()
    if problem:
        pytest.fail("FUSE tests need FUSE: {}".format(problem), pytrace=False)


@contextlib.contextmanager
def fuse_mount(backing: Path, board: str, mountpoint: Path) -> Iterator[Path]:
    """Serve ``backing`` over FUSE at ``mountpoint`` with `edgeexit sim mount` in a child process."""
    require_fuse()
    from edgeexit.sim.fusefs import unmount, wait_mounted

    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "edgeexit", "sim", "mount", "--board", board, "--backing",
                             str(backing), str(mountpoint)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_mounted(mountpoint, proc)
        yield mountpoint
    finally:
        if os.path.ismount(str(mountpoint)):
            unmount(mountpoint)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
