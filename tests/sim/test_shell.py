"""Shell-level checks on the FUSE mount: `cat` and `echo >` behave as on the board, errno included."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.sim.helpers import BOARDS, fuse_mount, make_tree, within_limits

pytestmark = pytest.mark.fuse


def _sh(cmd: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


@pytest.mark.parametrize("board", BOARDS)
def test_echo_and_cat(tmp_path: Path, board: str) -> None:
    k = make_tree(tmp_path / "tree", board)
    table = k.profile.cpu_table(k.board.cpu_policies[0].name).freqs
    with fuse_mount(k.root, board, tmp_path / "mnt") as mnt:
        pol = mnt / k.board.cpu_policies[0].relpath
        r = _sh("echo foo > scaling_governor", pol)
        assert r.returncode != 0 and "Invalid argument" in r.stderr
        r = _sh("echo {} > scaling_setspeed".format(table[1]), pol)
        assert r.returncode != 0 and "Invalid argument" in r.stderr
        assert _sh("cat scaling_setspeed", pol).stdout == "<unsupported>\n"
        r = _sh("cat scaling_available_frequencies", pol)
        assert r.stdout.endswith(" \n")
        ok = within_limits(k)  # not clamped by the boot floor (Orin Nano's 729600)
        assert _sh("echo userspace > scaling_governor && echo {} > scaling_setspeed".format(ok[1] + 1), pol).returncode == 0
        assert _sh("cat scaling_cur_freq", pol).stdout == "{}\n".format(ok[2])
        r = _sh("echo 1 > scaling_cur_freq", pol)
        assert r.returncode != 0 and "Permission denied" in r.stderr
        r = _sh("echo 1 > brand_new_file", pol)
        assert r.returncode != 0 and "Permission denied" in r.stderr
        if k.family == "4.9":
            r = _sh("echo {} > scaling_max_freq && echo {} > scaling_min_freq".format(table[1], table[3]), pol)
            assert r.returncode != 0 and "Invalid argument" in r.stderr
        if k.board.gpu is not None:
            dev = mnt / "sys/class/devfreq" / k.board.gpu.devfreq_name
            r = _sh("echo turbo > governor", dev)
            want = "No such device" if k.family == "4.9" else "Invalid argument"
            assert r.returncode != 0 and want in r.stderr
            r = _sh("echo 1 > userspace/set_freq", dev)
            assert r.returncode != 0
            assert _sh("echo userspace > governor && cat userspace/set_freq", dev).stdout == "undefined\n"
    # what the shell wrote through FUSE is the tree's state
    assert (k.root / k.board.cpu_policies[0].relpath / "scaling_governor").read_text() == "userspace\n"


def test_mount_background_status_and_umount_cli(tmp_path: Path) -> None:
    from tests.sim.helpers import require_fuse

    require_fuse()
    mnt = tmp_path / "mnt"
    run = [sys.executable, "-m", "edgeexit"]
    trees_before = set(Path(tempfile.gettempdir()).glob("edgeexit-sim-*"))
    r = subprocess.run(run + ["sim", "mount", "--board", "jetson-nano", "--background", str(mnt)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        assert "SIMULATED jetson-nano mounted" in r.stderr
        s = subprocess.run(run + ["status", "--board", "auto", "--sysfs-root", str(mnt)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        assert s.returncode == 0 and "SIMULATED (FUSE mount)" in s.stdout, s.stderr
    finally:
        u = subprocess.run(run + ["sim", "umount", str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
    assert u.returncode == 0, u.stderr
    u = subprocess.run(run + ["sim", "umount", str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    assert u.returncode != 0 and "is not mounted" in u.stderr and "Traceback" not in u.stderr
    # the temporary tree the server made is gone with it (it exits right after unmounting)
    deadline = time.monotonic() + 10
    while set(Path(tempfile.gettempdir()).glob("edgeexit-sim-*")) - trees_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not set(Path(tempfile.gettempdir()).glob("edgeexit-sim-*")) - trees_before


def test_mount_refuses_a_non_empty_mount_point(tmp_path: Path) -> None:
    """Mounting over a tree (meant for --backing) would hide it until the unmount."""
    from tests.cli.helpers import assert_one_line_error, edgeexit
    from tests.sim.helpers import require_fuse, snapshot

    require_fuse()
    k = make_tree(tmp_path / "tree", "jetson-nano")
    before = snapshot(k.root)
    assert_one_line_error(edgeexit("sim", "mount", "--board", "jetson-nano", str(k.root)), "is not empty", "--backing")
    assert not os.path.ismount(str(k.root)) and snapshot(k.root) == before


def test_a_mount_whose_server_died_is_named_and_can_be_unmounted(tmp_path: Path) -> None:
    # kill -9 of `sim mount` leaves the mount behind, answering ENOTCONN to everything: the commands say
    # so in one line, and `sim umount` still takes it down (it used to say "is not mounted").
    import os
    import re
    import signal

    from tests.sim.helpers import require_fuse

    require_fuse()
    mnt = tmp_path / "mnt"
    backing = tmp_path / "tree"
    make_tree(backing, "jetson-nano")
    run = [sys.executable, "-m", "edgeexit"]
    r = subprocess.run(run + ["sim", "mount", "--board", "jetson-nano", "--backing", str(backing), "--background",
                              str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    os.kill(int(re.search(r"\(pid (\d+)", r.stderr).group(1)), signal.SIGKILL)
    try:
        time.sleep(0.3)
        mount_again = ["sim", "mount", "--board", "jetson-nano", "--backing", str(backing), "--background", str(mnt)]
        for cmd in (["status"], ["restore"], ["run", "--cpu-khz", "max", "--limit", "1"], mount_again):
            where = [] if cmd is mount_again else ["--board", "jetson-nano", "--sysfs-root", str(mnt)]
            p = subprocess.run(run + cmd + where, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
            lines = p.stderr.strip().splitlines()
            assert p.returncode != 0 and len(lines) == 1, p.stderr
            assert "FUSE mount whose server has stopped" in lines[0] and "edgeexit sim umount" in lines[0]
    finally:
        u = subprocess.run(run + ["sim", "umount", str(mnt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
    assert u.returncode == 0, u.stderr
    assert not os.path.ismount(str(mnt))


def test_background_mount_says_why_the_server_refused(tmp_path: Path) -> None:
    """The server checks --backing against --board; in the background its one line used to be lost, leaving
    only 'the FUSE server exited with status 2'."""
    from tests.sim.helpers import require_fuse

    require_fuse()
    backing = tmp_path / "tree"
    make_tree(backing, "jetson-nano")
    r = subprocess.run([sys.executable, "-m", "edgeexit", "sim", "mount", "--board", "jetson-tx2", "--backing",
                        str(backing), "--background", str(tmp_path / "mnt")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert "pass --board jetson-nano" in lines[0] and "exited with status" not in lines[0]


@pytest.mark.parametrize("background", [False, True])
def test_a_refused_mount_leaves_no_mount_point_behind(tmp_path: Path, background: bool) -> None:
    """The mount point (and missing parents) were made before the checks, and stayed after a refusal."""
    from tests.sim.helpers import require_fuse

    require_fuse()
    backing = tmp_path / "tree"
    make_tree(backing, "jetson-nano")
    target = tmp_path / "new" / "mnt"
    r = subprocess.run([sys.executable, "-m", "edgeexit", "sim", "mount", "--board", "jetson-tx2", "--backing",
                        str(backing)] + (["--background"] if background else []) + [str(target)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert r.returncode != 0 and "pass --board jetson-nano" in r.stderr
    assert not (tmp_path / "new").exists()


def test_sim_init_refuses_auto_and_does_not_offer_it(tmp_path: Path) -> None:
    """The help offered 'auto' (detect from the device tree), which a simulated tree cannot do, and the
    refusal then said "--board NAME is required" although a board was given."""
    run = [sys.executable, "-m", "edgeexit", "sim"]
    r = subprocess.run(run + ["init", "--board", "auto", str(tmp_path / "t")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "not 'auto'" in lines[0], r.stderr
    for cmd in ("init", "mount"):
        h = subprocess.run(run + [cmd, "--help"], stdout=subprocess.PIPE, universal_newlines=True, timeout=60).stdout
        assert "auto" not in h.split("--board", 1)[1].split("--", 1)[0]


def test_a_run_whose_mount_server_dies_names_how_to_restore(tmp_path: Path) -> None:
    """The server killed mid-run: the run's restore fails with ENOTCONN. The error used to say "run `edgeexit
    restore`", which fails the same way until the backing tree is served again; it now says how, and that
    way restores the board."""
    import re
    import signal

    from edgeexit.dvfs.session import open_board, restore_board
    from edgeexit.errors import DvfsError
    from edgeexit.sim.fusefs import is_fuse_mount
    from tests.sim.helpers import require_fuse

    require_fuse()
    mnt, backing = tmp_path / "mnt", tmp_path / "tree"
    k = make_tree(backing, "jetson-nano")
    gov = backing / k.board.cpu_policies[0].relpath / "scaling_governor"
    mount = [sys.executable, "-m", "edgeexit", "sim", "mount", "--board", "jetson-nano", "--backing", str(backing),
             "--background", str(mnt)]
    r = subprocess.run(mount, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        with pytest.raises(DvfsError) as err:
            with open_board("jetson-nano", sysfs_root=mnt) as session:
                session.controller.set_cpu_khz("max")
                assert gov.read_text() == "userspace\n"
                os.kill(int(re.search(r"\(pid (\d+)", r.stderr).group(1)), signal.SIGKILL)
                time.sleep(0.3)
        msg = str(err.value)
        assert "stopped during the run" in msg and "--backing" in msg, msg
        assert "`edgeexit restore --board jetson-nano --sysfs-root {}`".format(mnt) in msg, msg
        assert gov.read_text() == "userspace\n"  # not put back: the state file is kept for the restore
        subprocess.run([sys.executable, "-m", "edgeexit", "sim", "umount", str(mnt)], timeout=60, check=True)
        r = subprocess.run(mount, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert restore_board("jetson-nano", mnt)["restored"]
        assert gov.read_text() != "userspace\n"
    finally:
        if is_fuse_mount(mnt):  # also one whose server died
            subprocess.run([sys.executable, "-m", "edgeexit", "sim", "umount", str(mnt)], timeout=60)
