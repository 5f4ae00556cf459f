"""`edgeexit sim` errors a user meets (the kernel rules themselves are tested in tests/sim)."""
from __future__ import annotations

from tests.cli.helpers import assert_one_line_error, edgeexit


def test_sim_init_where_nothing_can_be_created_names_the_directory():
    # Audit defect: a bare "No such file or directory (/proc/foo)", naming no fix.
    assert_one_line_error(edgeexit("sim", "init", "--board", "jetson-nano", "/proc/edgeexit-tree"),
                          "cannot create the simulated tree in /proc/edgeexit-tree", "pick an empty or new directory")


def test_sim_init_without_a_board_names_the_fix_once(tmp_path) -> None:
    p = edgeexit("sim", "init", str(tmp_path / "t"))
    line = assert_one_line_error(p, "--board NAME is required; `edgeexit boards` lists the names")
    assert line.count("see ") == 1  # click's own hint, not a second one in the message
