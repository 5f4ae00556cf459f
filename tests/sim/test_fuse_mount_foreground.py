"""`edgeexit sim mount` in the foreground: Ctrl-C (or SIGTERM) is the documented way to stop it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.sim.helpers import make_tree, require_fuse


@pytest.mark.fuse
@pytest.mark.parametrize("written", [False, True])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_unmounts_a_foreground_mount_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int,
                                                      written: bool) -> None:
    """libfuse ends its loop on the signal, unmounts, and returns status 8, which mfusepy raised as a bare
    RuntimeError: a traceback and exit status 1 for the way `sim mount --help` says to stop it. ``written``: after
    a write through the mount, whose node update swapped Python signal handlers over libfuse's C ones (SIG_DFL
    after the first write: a SIGTERM then killed the server and left the mount dead)."""
    require_fuse()
    from edgeexit.sim.fusefs import wait_mounted

    monkeypatch.setenv("EDGEEXIT_RUNTIME_DIR", str(tmp_path / "runtime"))
    k = make_tree(tmp_path / "t", "jetson-nano")
    mnt = tmp_path / "made" / "mnt"  # missing: the mount makes it, and removes it once unmounted
    proc = subprocess.Popen([sys.executable, "-m", "edgeexit", "sim", "mount", "--board", "jetson-nano", "--backing",
                             str(k.root), str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_mounted(mnt, proc)
        if written:
            (mnt / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor").write_text("userspace\n")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if os.path.ismount(str(mnt)):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"unmounted from" in err
    # only our own lines: libfuse's multi-threaded loop printed "Ignoring invalid max threads value"
    assert all(line.startswith(b"SIMULATED") for line in err.splitlines() if line.strip()), err.decode()
    assert not os.path.ismount(str(mnt))
    assert not (tmp_path / "made").exists()


_STOPPED_WHILE_BUILDING = """
import os, signal, sys
import edgeexit.sim.tree as tree

real = tree.build_tree
def build_then_sigterm(*args, **kwargs):
    made = real(*args, **kwargs)  # the whole tree is on disk: what the server must not leave behind
    os.kill(os.getpid(), signal.SIGTERM)
    return made
tree.build_tree = build_then_sigterm
mnt = sys.argv[2]
if sys.argv[1] == "cli":
    from edgeexit.cli import main
    main(["sim", "mount", "--board", "jetson-nano", mnt])
else:  # a library user, whose SIGTERM is still SIG_DFL
    from edgeexit.sim.fusefs import mount
    mount("jetson-nano", mnt)
"""


@pytest.mark.fuse
@pytest.mark.parametrize("via", ["cli", "library"])
def test_a_server_stopped_while_building_its_tree_leaves_nothing(tmp_path: Path, via: str) -> None:
    """The temporary tree was made before the server's cleanup was set up, with SIGTERM still SIG_DFL (or the
    CLI's SystemExit): a server stopped then left /tmp/edgeexit-sim-*/tree, and the mount point it made."""
    require_fuse()
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    mnt = tmp_path / "made" / "mnt"
    env = dict(os.environ, TMPDIR=str(tmp), EDGEEXIT_RUNTIME_DIR=str(tmp_path / "runtime"))
    proc = subprocess.run([sys.executable, "-c", _STOPPED_WHILE_BUILDING, via, str(mnt)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert not os.path.ismount(str(mnt))
    assert list(tmp.iterdir()) == []
    assert not (tmp_path / "made").exists()


@pytest.mark.fuse
def test_a_killed_servers_temporary_tree_is_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server killed with SIGKILL cannot delete its temporary tree: `sim umount` (and the next `sim mount`)
    deletes it, with the lock a run through the mount left, once it is a minute old; a live server's stays."""
    require_fuse()
    from edgeexit.dvfs.state import MOUNT_SIM_PREFIX, sweep_killed_simulations
    from edgeexit.sim.fusefs import wait_mounted

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    runtime = tmp_path / "runtime"
    for var, value in (("TMPDIR", tmp), ("EDGEEXIT_RUNTIME_DIR", runtime)):
        monkeypatch.setenv(var, str(value))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    mnts = [tmp_path / "killed", tmp_path / "live"]
    edgeexit = [sys.executable, "-m", "edgeexit"]
    procs = [subprocess.Popen(edgeexit + ["sim", "mount", "--board", "jetson-nano", str(m)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for m in mnts]
    try:
        for m, p in zip(mnts, procs):
            wait_mounted(m, p)
        ran = subprocess.run(edgeexit + ["run", "--board", "jetson-nano", "--sysfs-root", str(mnts[0]), "--cpu-khz",
                                         "max", "--limit", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert ran.returncode == 0, ran.stderr.decode()
        assert len(list(runtime.glob("*.lock"))) == 1
        procs[0].kill()
        procs[0].wait()
        trees = list(tmp.glob(MOUNT_SIM_PREFIX + "jetson-nano-*"))
        assert len(trees) == 2
        assert sweep_killed_simulations() == 0  # both younger than a minute: perhaps still starting
        for t in trees:
            os.utime(str(t), (time.time() - 120, time.time() - 120))
        down = subprocess.run(edgeexit + ["sim", "umount", str(mnts[0])], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert down.returncode == 0, down.stderr.decode()
        left = list(tmp.glob(MOUNT_SIM_PREFIX + "*"))
        assert len(left) == 1 and left[0] in trees and os.path.ismount(str(mnts[1]))
        assert list(runtime.glob("*.lock")) == []
        assert sweep_killed_simulations(min_age_s=0) == 0  # the live server holds its tree
    finally:
        for m, p in zip(mnts, procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=20)
            if os.path.ismount(str(m)):
                subprocess.run(["fusermount3", "-u", "-z", str(m)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert list(tmp.iterdir()) == []
