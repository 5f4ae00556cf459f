"""`edgeexit sim mount --background`: a relative --backing serves the tree (libfuse moves the server to /
once mounted, so a relative path named nothing there), and a server that does not mount in time is
stopped, its mount undone, rather than left to mount after the command gave up."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List

import pytest

from edgeexit.boards.sysfs import HostSysfs
from edgeexit.errors import DvfsError
from edgeexit.sim import fusefs
from tests.sim.helpers import make_tree, require_fuse

pytestmark = pytest.mark.fuse
BOARD = "raspberry-pi-5"  # path handling, not kernel rules: one board


def _servers(mnt: Path) -> List[int]:
    """Pids of `edgeexit sim mount` processes serving ``mnt`` (by their argv)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/{}/cmdline".format(d), "rb") as fh:
                argv = fh.read().split(b"\0")
            with open("/proc/{}/stat".format(d)) as fh:
                zombie = fh.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and b"mount" in argv and str(mnt).encode() in argv:
            out.append(int(d))
    return out


def _clean_up(mnt: Path) -> None:
    """Whatever a failing run left: its mount, then its server."""
    if fusefs.is_fuse_mount(mnt):
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for pid in _servers(mnt):
        os.kill(pid, signal.SIGKILL)


def test_relative_backing_serves_the_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_fuse()
    k = make_tree(tmp_path / "tree", BOARD)
    mnt = tmp_path / "mnt"
    monkeypatch.chdir(str(tmp_path))
    try:
        fusefs.mount(BOARD, Path("mnt"), backing=Path("tree"), foreground=False)
        pol = k.board.cpu_policies[0].relpath
        assert (mnt / pol / "scaling_governor").read_text() == (k.root / pol / "scaling_governor").read_text()
        HostSysfs(mnt).write(pol + "/scaling_governor", "performance")
        assert (k.root / pol / "scaling_governor").read_text() == "performance\n"  # the tree behind it
        fusefs.unmount(mnt)
        deadline = time.monotonic() + 20
        while _servers(mnt) and time.monotonic() < deadline:  # it exits once unmounted
            time.sleep(0.05)
        assert not _servers(mnt)
        assert not mnt.exists()  # the server made the missing mount point and removed it again
    finally:
        _clean_up(mnt)


def test_a_server_that_does_not_mount_in_time_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_fuse()
    k = make_tree(tmp_path / "tree", BOARD)
    mnt = tmp_path / "mnt"
    wait = fusefs.wait_mounted

    def give_up_at_once(mountpoint: Path, proc: "subprocess.Popen[bytes]", timeout_s: float = 20.0) -> None:
        wait(mountpoint, proc, 0.0)  # before the server can mount: as a slow start past the 20 s does

    monkeypatch.setattr(fusefs, "wait_mounted", give_up_at_once)
    try:
        with pytest.raises(DvfsError, match="was not mounted within"):
            fusefs.mount(BOARD, mnt, backing=k.root, foreground=False)
        time.sleep(3)  # long enough for a server left running to mount
        assert not fusefs.is_fuse_mount(mnt)
        assert not _servers(mnt)
        assert not mnt.exists()  # the mount point it made is gone too
    finally:
        _clean_up(mnt)
