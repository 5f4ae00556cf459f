"""Which OPP a devfreq device runs at a max_freq between two table entries, per kernel family, for every
board, in-process and through FUSE.

update_devfreq clamps the governor's target to [min, max] and picks the OPP with ceil, or floor when max
clamped it [K49df][Kdfus]. 4.x's userspace and performance governors return a value already within max
(the request clamped by the governor itself; max_freq itself), so max never clamps it: ceil, above the
max ("jumps to 998" above a 950 MHz max on a Nano [Jover#3]). 5.10+ governors return the raw request /
DEVFREQ_MAX_FREQ: update_devfreq clamps it to max, and the OPP is the floor, within max.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import pytest

from edgeexit.boards.sysfs import Sysfs
from edgeexit.sim.kernel import SimulatedKernel
from edgeexit.sim.sysfs import SimulatedSysfs
from tests.sim.helpers import make_tree

Sim = Tuple[Sysfs, SimulatedKernel]


def test_non_table_max_rounds_up_on_49_and_down_on_510_and_later(sim: Sim) -> None:
    s, k = sim
    if k.board.gpu is None or k.profile.gpu is None:
        return
    g = "sys/class/devfreq/" + k.board.gpu.devfreq_name
    table = k.profile.gpu.table.freqs
    i = len(table) // 2
    below, above = table[i], table[i + 1]
    cap = (below + above) // 2 // 1000 * 1000  # whole kHz: 5.10+ keep max as a kHz request
    s.write(g + "/max_freq", cap)
    assert int(s.read(g + "/max_freq")) == cap
    want = above if k.family == "4.9" else below
    s.write(g + "/governor", "performance")
    assert int(s.read(g + "/cur_freq")) == want
    s.write(g + "/governor", "userspace")
    s.write(g + "/userspace/set_freq", table[-1])  # above max
    assert int(s.read(g + "/cur_freq")) == want
    s.write(g + "/userspace/set_freq", table[1] - 1)  # within the limits, between entries: ceil everywhere
    assert int(s.read(g + "/cur_freq")) == table[1]
    s.write(g + "/userspace/set_freq", below)
    assert int(s.read(g + "/cur_freq")) == below


@pytest.mark.parametrize("board,governor,cap,asked,runs", [
    # Nano, 4.9: nvpmodel 5W's GPU cap 640 MHz [JS:nvp-emu]; performance returns max_freq itself: ceil
    ("jetson-nano", "performance", 640000000, None, 691200000),
    ("jetson-nano", "userspace", 640000000, 921600000, 691200000),
    # Xavier NX, 5.10: the raw request, clamped to max by update_devfreq: floor
    ("jetson-xavier-nx", "userspace", 500000000, 1109250000, 408000000),
    ("jetson-xavier-nx", "performance", 500000000, None, 408000000),
    ("jetson-orin-nano", "performance", 500000000, None, 408000000),  # 5.15 as 5.10
])
def test_audited_examples(tmp_path: Path, board: str, governor: str, cap: int, asked: object, runs: int) -> None:
    k = make_tree(tmp_path / "t", board)
    s = SimulatedSysfs(k.root, k)
    g = k.board.gpu.devfreq_paths[0]  # type: ignore[union-attr]
    s.write(g + "/max_freq", cap)
    s.write(g + "/governor", governor)
    if asked is not None:
        s.write(g + "/userspace/set_freq", asked)
    assert int(s.read(g + "/cur_freq")) == runs
    assert int(s.read(g + "/max_freq")) == cap
