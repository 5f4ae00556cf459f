"""`edgeexit sim` errors a user meets (the kernel rules themselves are tested in tests/sim)."""
from __future__ import annotations

import sys

import pytest

from tests.cli.helpers import assert_one_line_error, edgeexit


def test_sim_init_where_nothing_can_be_created_names_the_directory():
    # Audit defect: a bare "No such file or directory (/proc/foo)", naming no fix.
    assert_one_line_error(edgeexit("sim", "init", "--board", "jetson-nano", "/proc/edgeexit-tree"),
                          "cannot create the simulated tree in /proc/edgeexit-tree", "pick an empty or new directory")


def test_sim_init_without_a_board_names_the_fix_once(tmp_path) -> None:
    p = edgeexit("sim", "init", str(tmp_path / "t"))
    line = assert_one_line_error(p, "--board NAME is required; `edgeexit boards` lists the names")
    assert line.count("see ") == 1  # click's own hint, not a second one in the message


@pytest.mark.backend  # so it runs in CI's Python 3.8 stage too
def test_sim_mount_on_python_38_says_it_needs_39(tmp_path) -> None:
    """On Python 3.8 pip picks mfusepy 1.x, which hands libfuse3 direct_io as a mount option: every mount failed
    with libfuse's "unknown option(s): -o direct_io" and a status. mfusepy 3 (Python 3.9+) is required now."""
    if sys.version_info < (3, 9):
        mnt = tmp_path / "mnt"
        assert_one_line_error(edgeexit("sim", "mount", "--board", "jetson-nano", str(mnt)),
                              "sim mount needs Python 3.9 or later")
        assert not mnt.exists()
    else:
        from edgeexit.sim.fusefs import _mfusepy_version

        assert (_mfusepy_version() or 0) >= 3  # what the [fuse] and [test] extras install here


def test_a_background_servers_refusal_keeps_what_libfuse_said() -> None:
    """In the background only the server's last stderr line was passed on: "(status 3; its own message is above)",
    with nothing above it, libfuse's reason lost (a review on Python 3.8: "unknown option(s): -o direct_io")."""
    from edgeexit.sim.fusefs import server_refusal

    line = server_refusal(["fuse: unknown option(s): `-o direct_io'", "edgeexit: warning: something else",
                           "edgeexit: error: libfuse could not mount /m (status 3; its own message is above): check that "
                           "fuse3 is installed"])
    assert line == ("libfuse could not mount /m (status 3; libfuse said: fuse: unknown option(s): `-o direct_io'): "
                    "check that fuse3 is installed")
    assert server_refusal(["edgeexit: error: /m is not empty: mount on an empty directory"]) == \
        "/m is not empty: mount on an empty directory"
