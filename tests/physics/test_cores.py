"""Interpreter threads beyond the board's online CPUs share cores: no faster, and no more power."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeexit.dvfs import open_board
from edgeexit.probes import board_physics
from tests.sim.helpers import BOARDS, make_tree


@pytest.mark.parametrize("board", BOARDS)
def test_threads_past_the_online_cores_change_nothing(board: str) -> None:
    # Audit defect: 64 threads on the simulated 4-core Nano drew 7x the energy of 4 threads, and ran faster.
    with open_board(board, simulate=True) as session:
        online = sum(len(d.online_cpus()) for d in session.controller.online_cpus())
        assert 0 < online <= session.board.possible_cpus
        at_cores, beyond = board_physics(session, online), board_physics(session, 16 * online)
        fewer = board_physics(session, max(1, online - 1))
    assert beyond.cores == at_cores.cores == online
    f = at_cores.f_max_khz
    assert beyond.segment_s(10 ** 6, f) == at_cores.segment_s(10 ** 6, f)
    assert beyond.power(f, True).total_mw == at_cores.power(f, True).total_mw
    if online > 1:  # below the core count, threads still help
        assert fewer.segment_s(10 ** 6, f) > at_cores.segment_s(10 ** 6, f)


def test_offline_cpus_of_an_online_policy_are_not_cores(tmp_path: Path) -> None:
    # Review finding: the count took every CPU of an online policy (related_cpus), so a Nano in its 5W mode
    # (2 of 4 CPUs online) ran 4 threads on 4 modelled cores, twice as fast as it could.
    k = make_tree(tmp_path / "t", "jetson-nano")
    for c in (2, 3):
        k.write("sys/devices/system/cpu/cpu{}/online".format(c), b"0\n")
    with open_board("jetson-nano", sysfs_root=k.root) as session:
        assert board_physics(session, 4).cores == 2
