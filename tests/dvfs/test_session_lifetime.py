"""A board session's life as a library user meets it: writes only while it is open (entered and not yet
closed), close is idempotent, and a --simulate tree goes with its session however that ends."""
from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import pytest

from edgeexit.boards.config import load_board
from edgeexit.dvfs import open_board
from edgeexit.dvfs.controller import DvfsController
from edgeexit.errors import BoardBusyError, BoardConfigError, DvfsError, ThermalError
from edgeexit.sim.sysfs import SimulatedSysfs
from tests.sim.helpers import make_tree, snapshot


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_a_closed_session_writes_nothing(tmp_path: Path, runtime_dir: Path) -> None:
    """A session still pinned after its `with` block: no lock, no saved state, and nothing ever restored
    it (the governor stayed userspace)."""
    make_tree(tmp_path / "t", "jetson-nano")
    before = snapshot(tmp_path / "t")
    with open_board("jetson-nano", sysfs_root=tmp_path / "t") as session:
        session.controller.set_cpu_khz(921600)
    with pytest.raises(DvfsError, match="session is closed.*with open_board"):
        session.controller.set_cpu_khz(1479000)
    session.close()  # again: nothing to do
    with pytest.raises(DvfsError, match="session is closed; open a new one"):
        session.__enter__()
    assert snapshot(tmp_path / "t") == before
    assert not list(runtime_dir.glob("*.state.json"))


def test_a_session_never_entered_writes_nothing(tmp_path: Path, runtime_dir: Path) -> None:
    make_tree(tmp_path / "t", "jetson-nano")
    before = snapshot(tmp_path / "t")
    session = open_board("jetson-nano", sysfs_root=tmp_path / "t")
    with pytest.raises(DvfsError, match="session is not open.*with open_board"):
        session.controller.set_cpu_khz(921600)
    with pytest.raises(DvfsError, match="session is not open"):
        session.controller.set_cpu_khz(921600)  # still refused: the refusal armed nothing
    assert snapshot(tmp_path / "t") == before
    assert not list(runtime_dir.glob("*.state.json"))
    with session:  # entering it after all works, and restores
        session.controller.set_cpu_khz(921600)
    assert snapshot(tmp_path / "t") == before


def test_a_failed_save_arms_nothing() -> None:
    """The first write saves the board's state first; when that save failed, the next write went ahead
    unsaved (the controller counted itself armed before the save)."""
    calls = []

    def save() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise DvfsError("state file cannot be written")

    with tempfile.TemporaryDirectory() as tmp:
        k = make_tree(Path(tmp) / "t", "jetson-nano")
        ctl = DvfsController(load_board("jetson-nano"), SimulatedSysfs(k.root, k), save)
        with pytest.raises(DvfsError, match="cannot be written"):
            ctl.set_cpu_khz(921600)
        ctl.set_cpu_khz(921600)
    assert len(calls) == 2


def test_a_simulated_tree_goes_with_its_session(private_tmp: Path) -> None:
    trees = lambda: list(private_tmp.glob("edgeexit-sim-*"))  # noqa: E731
    open_board("jetson-nano", simulate=True).close()  # never entered
    assert trees() == []
    session = open_board("jetson-nano", simulate=True)
    assert len(trees()) == 1
    del session  # dropped, never entered or closed
    gc.collect()
    assert trees() == []
    with pytest.raises(DvfsError, match="unknown pin method"):
        open_board("jetson-nano", simulate=True, method="bogus")
    with pytest.raises(ThermalError, match="'hot' m°C is not plausible"):
        open_board("jetson-nano", simulate=True, thermal_limit_mc="hot")  # type: ignore[arg-type]
    assert trees() == []
    with open_board("jetson-nano", simulate=True) as session:
        session.controller.set_cpu_khz("max")
    assert trees() == []


def test_bad_board_arguments_are_edgeexit_errors(tmp_path: Path) -> None:
    with pytest.raises(BoardConfigError, match="5 is not a board name"):
        open_board(5, simulate=True)  # type: ignore[arg-type]
    make_tree(tmp_path / "t", "jetson-nano")
    with open_board("jetson-nano", sysfs_root=tmp_path / "t"):
        with pytest.raises(BoardBusyError, match="already open in this process.*close that session first"):
            with open_board("jetson-nano", sysfs_root=tmp_path / "t"):
                pass
