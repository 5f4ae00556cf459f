"""The CLI's last-resort handling: an OSError no check caught still names the path and what to check, and an
empty option value is a usage error rather than a silent "not given"."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.cli.helpers import assert_one_line_error, edgeexit


@pytest.mark.parametrize("err,needles", [
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/s/scaling_governor"),
     ("Is a directory (/s/scaling_governor)", "check that it is a regular file", "sysfs node")),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/s/x/y"), ("Not a directory (/s/x/y)", "regular file")),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/s/n"), ("(/s/n)", "check that it exists")),
    (PermissionError(errno.EACCES, "Permission denied", "/s/n"), ("(/s/n)", "permissions", "sudo")),
    (OSError(errno.EIO, "Input/output error", "/s/n"), ("Input/output error (/s/n)", "check that it is the file")),
    (OSError("no errno at all"), ("no errno at all", "check the files and devices")),
])
def test_os_error_line_names_the_path_and_a_fix(err: OSError, needles: tuple) -> None:
    from edgeexit.cli import os_error_line

    line = os_error_line(err)
    assert "\n" not in line and ";" in line
    for n in needles:
        assert n in line, line


def test_a_sysfs_node_that_is_a_directory_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    """Before: `edgeexit: error: Is a directory (...)` and nothing about what to do."""
    root = tmp_path / "tree"
    assert edgeexit("sim", "init", "--board", "jetson-nano", str(root)).returncode == 0
    node = root / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
    node.unlink()
    node.mkdir()
    p = edgeexit("run", "--sysfs-root", str(root), "--board", "jetson-nano", "--cpu-khz", "max", "--limit", "2")
    # (the DVFS controller may come to catch this itself: any one line naming the node and a fix will do)
    line = assert_one_line_error(p, str(node))
    assert "; " in line.split(str(node), 1)[1], line


@pytest.mark.parametrize("option", ["--cpu-khz", "--gpu-hz"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_clock_is_a_usage_error(option: str, value: str) -> None:
    # `--cpu-khz "$KHZ"` with KHZ unset ran unpinned and said nothing
    p = edgeexit("run", "--board", "jetson-nano", "--simulate", option, value, "--limit", "2")
    assert p.returncode == 2
    assert_one_line_error(p, option, "is empty", "or leave the option out")
