"""A userspace pin below the policy's min: the governor clamps a request to [min, max] [Kus], so a floor
such as the Orin Nano's boot-time nvpmodel MIN_FREQ 729600 would hold every lower pin up. The min is
lowered (as a min/max pin lowers it) and comes back with the rest, on every board."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeexit.dvfs import open_board
from tests.faults.helpers import diff, tree
from tests.sim.helpers import BOARDS, make_tree


@pytest.mark.parametrize("board", BOARDS)
def test_userspace_pin_below_the_floor_is_honoured_and_restored(tmp_path: Path, board: str) -> None:
    k = make_tree(tmp_path / "t", board)
    pol = k.board.cpu_policies[0]
    table = k.profile.cpu_table(pol.name).freqs
    rel = pol.relpath + "/scaling_min_freq"
    if int((k.root / rel).read_text()) == table[0]:  # no floor at boot (all but the Orin Nano): set one
        k.write(rel, "{}\n".format(table[len(table) // 2]).encode())
    floor = int((k.root / rel).read_text())
    before = tree(k.root)
    want = table[1]
    assert want < floor
    with open_board(board, sysfs_root=k.root) as s:  # auto: the userspace governor
        s.controller.set_cpu_khz(want)
        assert s.controller.cpu_khz() == want  # what cpufreq shows (the Pi 5's firmware floor aside)
        assert (k.root / pol.relpath / "scaling_governor").read_text() == "userspace\n"
        assert int((k.root / rel).read_text()) == want
    assert diff(tree(k.root), before) == []
