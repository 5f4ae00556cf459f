"""min/max pins and restores in an order L4T 4.9 accepts when the shown max is above the requested one.

4.9 checks a min write against the *requested* max, while scaling_max_freq shows the table-verified max
[K49]: on a Nano after nvpmodel 5W (max 918000) and jetson_clocks (min = max), the board shows min 918000
and max 921600 with 918000 still requested. The controller skips writes of a value a file already shows.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest

from edgeexit.dvfs.controller import DvfsController
from tests.sim.helpers import BOARDS, RecordingSysfs, make_tree


def _bumped(tmp_path: Path, board: str) -> Tuple[DvfsController, RecordingSysfs, str, List[int], int]:
    """A board whose first policy has min = max = a non-table value v (jetson_clocks under a non-table
    nvpmodel cap); returns (controller, sysfs, policy dir, table, v)."""
    k = make_tree(tmp_path / "t", board)
    sysfs = RecordingSysfs(k.root, k)
    pol = k.board.cpu_policies[0]
    table = k.profile.cpu_table(pol.name).freqs
    i = len(table) // 2
    v = (table[i] + table[i + 1]) // 2
    sysfs.write(pol.relpath + "/scaling_max_freq", v)  # the nvpmodel cap
    sysfs.write(pol.relpath + "/scaling_min_freq", v)  # jetson_clocks: min = max
    sysfs.writes.clear()
    return DvfsController(k.board, sysfs, method="minmax"), sysfs, pol.relpath, table, v


@pytest.mark.parametrize("board", BOARDS)
def test_pin_to_the_shown_max_above_a_bumped_request(tmp_path: Path, board: str) -> None:
    ctl, sysfs, d, table, v = _bumped(tmp_path, board)
    shown_max = int(sysfs.read(d + "/scaling_max_freq"))
    assert shown_max in table
    assert ctl.set_cpu_khz(shown_max) == shown_max  # 4.9 before the fix: min first, or max skipped -> EINVAL
    assert int(sysfs.read(d + "/scaling_min_freq")) == int(sysfs.read(d + "/scaling_max_freq")) == shown_max


def test_nano_pin_after_5w_and_jetson_clocks(tmp_path: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    sysfs = RecordingSysfs(k.root, k)
    d = k.board.cpu_policies[0].relpath
    sysfs.write(d + "/scaling_max_freq", 918000)
    sysfs.write(d + "/scaling_min_freq", 918000)
    sysfs.writes.clear()
    ctl = DvfsController(k.board, sysfs, method="minmax")
    assert ctl.set_cpu_khz(921600) == 921600
    # the shown max (921600) is changed first so that the write of 921600 reaches the kernel's request
    assert sysfs.writes == [("scaling_max_freq", "921601"), ("scaling_max_freq", "921600"),
                            ("scaling_min_freq", "921600")]


@pytest.mark.parametrize("board", BOARDS)
def test_restore_raising_min_inside_the_shown_range(tmp_path: Path, board: str) -> None:
    """A saved pair whose min lies above the requested max but below the shown max: max goes first."""
    ctl, sysfs, d, table, v = _bumped(tmp_path, board)
    pol = ctl.cpus[0]
    shown_min, shown_max = pol.limits()  # 4.9/5.10: (v, next entry); 5.15+/6.x resolve both to that entry
    saved = {"governor": pol.governor(), "min": str(v + 1), "max": str(v + 1), "setspeed": None}
    ctl.restore([{"kind": "cpu", "name": pol.name, "path": d, "saved": saved}])  # 4.9 before the fix: EINVAL
    first = [w for w in sysfs.writes if w[0].startswith("scaling_m")][0]
    assert first == ("scaling_max_freq" if shown_min < v + 1 else "scaling_min_freq", str(v + 1))
    lo, hi = pol.limits()
    assert lo == (v + 1 if k_family(ctl) in ("4.9", "5.10") else shown_max) and hi == shown_max


def k_family(ctl: DvfsController) -> str:
    return ctl.board.kernel


@pytest.mark.parametrize("board", BOARDS)
def test_lowering_writes_min_first(tmp_path: Path, board: str) -> None:
    k = make_tree(tmp_path / "t", board)
    sysfs = RecordingSysfs(k.root, k)
    ctl = DvfsController(k.board, sysfs, method="minmax")
    opps = ctl.cpu_opps_khz()
    ctl.set_cpu_khz(opps[-2])
    sysfs.writes.clear()
    ctl.set_cpu_khz(opps[2])
    assert [w[0] for w in sysfs.writes if w[0].startswith("scaling_m")][:2] == ["scaling_min_freq", "scaling_max_freq"]


def _kernel(board: str) -> str:
    from edgeexit.boards.config import load_board

    return load_board(board).kernel


# 4.9 and 5.10 show a request that needs no bump as written; 5.15 and 6.x show every limit as a table entry, so
# the request behind a shown pair cannot be read there (docs/reliability.md).
SHOWN_AS_WRITTEN = [b for b in BOARDS if _kernel(b) in ("4.9", "5.10")]


@pytest.mark.parametrize("method", ["minmax", "userspace"])
@pytest.mark.parametrize("board", SHOWN_AS_WRITTEN)
def test_a_run_keeps_a_bumped_max_request(tmp_path: Path, board: str, method: str) -> None:
    """A review: after nvpmodel 5W (max 918000) and jetson_clocks (min = max) a Nano shows max 921600; a run saved
    that and wrote it back, so the kernel's request became 921600, and once min was lowered again the CPU ran a
    step above the power mode's cap (825600 -> 921600 under performance)."""
    assert "jetson-nano" in SHOWN_AS_WRITTEN and len(SHOWN_AS_WRITTEN) >= 3
    from edgeexit.dvfs.session import open_board
    from edgeexit.sim.sysfs import SimulatedSysfs

    k = make_tree(tmp_path / "t", board)
    s = SimulatedSysfs(k.root, k)
    pol = k.board.cpu_policies[0]
    table = k.profile.cpu_table(pol.name).freqs
    v = (table[len(table) // 2] + table[len(table) // 2 + 1]) // 2  # a cap between two entries
    s.write(pol.relpath + "/scaling_max_freq", v)
    s.write(pol.relpath + "/scaling_min_freq", v)
    shown = (s.read(pol.relpath + "/scaling_min_freq"), s.read(pol.relpath + "/scaling_max_freq"))
    with open_board(board, sysfs_root=k.root, method=method) as session:
        session.controller.set_cpu_khz(table[1])
    assert (s.read(pol.relpath + "/scaling_min_freq"), s.read(pol.relpath + "/scaling_max_freq")) == shown
    s.write(pol.relpath + "/scaling_min_freq", table[0])  # `jetson_clocks --restore`: the cap shows again
    assert int(s.read(pol.relpath + "/scaling_max_freq")) <= v  # the request, as the kernel shows it: not above it
