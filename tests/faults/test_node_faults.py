"""A node made read-only, or missing, on a tree from `edgeexit sim init`: one line naming the node and
the fix, exit 2, no traceback, and the tree left as it was (in-process and through FUSE)."""
from __future__ import annotations

import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from tests.faults.helpers import cli, diff, one_line_error, tree
from tests.sim.helpers import fuse_mount

BACKENDS = ["inproc", pytest.param("fuse", marks=pytest.mark.fuse)]
CPU = "sys/devices/system/cpu/cpufreq/policy0"
GPU = "sys/devices/gpu.0/devfreq/57000000.gpu"


@contextmanager
def sim_init(tmp_path: Path, backend: str) -> Iterator[Tuple[Path, Path]]:
    """(root the run uses, the backing tree) for a Jetson Nano made by `edgeexit sim init`."""
    backing = tmp_path / "t"
    res = cli("sim", "init", "--board", "jetson-nano", str(backing))
    assert res.returncode == 0, res.stderr
    if backend == "inproc":
        yield backing, backing
    else:
        with fuse_mount(backing, "jetson-nano", tmp_path / "mnt") as mnt:
            yield mnt, backing


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_only_node_refuses_the_pin(tmp_path: Path, backend: str) -> None:
    with sim_init(tmp_path, backend) as (root, backing):
        node = backing / CPU / "scaling_setspeed"
        node.chmod(0o444)  # before the run: it must stay so, as on a board
        before = tree(backing)
        res = cli("run", "--board", "jetson-nano", "--sysfs-root", str(root), "--cpu-khz", "921600", "--limit", "2")
        one_line_error(res, CPU + "/scaling_setspeed", "mode 0444", "chmod u+w")
        assert res.returncode == 2
        assert diff(tree(backing), before) == []  # the governor switched first is back
        assert stat.S_IMODE(node.stat().st_mode) == 0o444


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("node,args", [(CPU + "/scaling_available_frequencies", ("--cpu-khz", "921600")),
                                       (GPU + "/available_governors", ("--gpu-hz", "max"))])
def test_missing_node_names_it_and_the_fix(tmp_path: Path, backend: str, node: str, args: Tuple[str, ...]) -> None:
    with sim_init(tmp_path, backend) as (root, backing):
        (backing / node).unlink()
        before = tree(backing)
        res = cli("run", "--board", "jetson-nano", "--sysfs-root", str(root), "--limit", "2", *args)
        one_line_error(res, node + " does not exist", "--board", "edgeexit sim init")
        assert res.returncode == 2
        assert diff(tree(backing), before) == []
