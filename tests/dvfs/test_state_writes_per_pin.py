"""How often a run rewrites its state file: a planner pins between blocks, in the middle of an inference.

Each save is an fsync'd file write, and every pin used to save twice per domain (before: "in flight";
after: what edgeexit left). A domain pinned again stays in flight in the state file instead, so a long
planned run saves a bounded number of times, and a SIGKILL still leaves a state file that restores it.
A domain pinned once keeps its exact record, so someone else's change after a kill is still a conflict
(tests/dvfs/test_restore_ownership.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List

import pytest

from edgeexit.dvfs import open_board
from edgeexit.dvfs.session import restore_board
from tests.faults.helpers import diff, fork_child, tree
from tests.sim.helpers import BOARDS, make_tree


def _counting(ctl: Any) -> List[int]:
    """Count the controller's state saves (its on_change is the session's save)."""
    saves = []  # type: List[int]
    inner = ctl._on_change  # type: Callable[[], None]

    def save() -> None:
        saves.append(1)
        inner()
    ctl._on_change = save
    return saves


def _clocks(session: Any) -> List[int]:
    ctl = session.controller
    return list(ctl.cpu_opps_khz())


@pytest.mark.parametrize("board", BOARDS)
def test_many_pins_save_the_state_file_a_bounded_number_of_times(tmp_path: Path, board: str, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    before = tree(k.root)
    with open_board(board, sysfs_root=k.root) as s:
        ctl = s.controller
        opps = _clocks(s)
        ctl.set_cpu_khz(opps[-1])  # the first pin: saved before and after, an exact record
        saves = _counting(ctl)
        for i in range(40):  # a planner's pins: up and down between blocks
            ctl.set_cpu_khz(opps[-1] if i % 2 else opps[len(opps) // 2])
        domains = len(ctl.online_cpus())
        assert len(saves) <= domains, saves  # was 2 per pin and domain: 80 or more
        state = json.loads(s.state_file.read_text())
        assert set(state["in_flight"]) == {d.relpath for d in ctl.online_cpus()}
        assert not ctl.in_flight  # in memory each pin completed: the session's own restore still checks
    assert diff(tree(k.root), before) == []
    assert not list(runtime_dir.glob("*.state.json"))


@pytest.mark.parametrize("board", ["jetson-nano", "jetson-orin-nano"])
def test_a_run_killed_after_many_pins_is_restored(tmp_path: Path, board: str, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    before = tree(k.root)
    def pin_and_die() -> None:
        with open_board(board, sysfs_root=k.root) as s:
            opps = _clocks(s)
            for i in range(10):
                s.controller.set_cpu_khz(opps[i % len(opps)])
            os._exit(0)  # no unwinding, no restore: as SIGKILL leaves it

    pid = fork_child(pin_and_die)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert list(runtime_dir.glob("*.state.json"))
    restore_board(board, k.root)
    assert diff(tree(k.root), before) == []
    assert not list(runtime_dir.glob("*.state.json"))
