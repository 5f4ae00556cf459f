"""Fixtures: a simulated board's Sysfs, in-process or through a FUSE mount, for every board."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Tuple

import pytest

from edgeexit.boards.sysfs import HostSysfs, Sysfs
from edgeexit.sim.kernel import SimulatedKernel
from edgeexit.sim.sysfs import SimulatedSysfs
from tests.sim.helpers import BOARDS, fuse_mount, make_tree


@pytest.fixture(params=["inproc", pytest.param("fuse", marks=pytest.mark.fuse)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=BOARDS)
def board_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim(tmp_path: Path, board_name: str, backend: str) -> Iterator[Tuple[Sysfs, SimulatedKernel]]:
    """(sysfs, kernel): the same simulated kernel, reached in-process or via plain file I/O on FUSE."""
    kernel = make_tree(tmp_path / "tree", board_name)
    if backend == "inproc":
        yield SimulatedSysfs(kernel.root, kernel), kernel
    else:
        with fuse_mount(kernel.root, board_name, tmp_path / "mnt") as mnt:
            yield HostSysfs(mnt), kernel
