"""``open_board``: choose the sysfs (real, simulated in-process, or a FUSE mount), lock the board,
save before the first write, and restore on exit, exceptions, Ctrl-C and SIGTERM."""
from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, Optional, Type

from edgeexit.boards.config import BoardConfig, load_board
from edgeexit.boards.detect import detect_board
from edgeexit.boards.profile import FirmwareProfile, load_profile
from edgeexit.boards.sysfs import HostSysfs, Sysfs
from edgeexit.dvfs.controller import DvfsController
from edgeexit.dvfs.state import BoardLock, read_state, state_path, write_state
from edgeexit.errors import BoardConfigError, DvfsError


def _warn(msg: str) -> None:
    sys.stderr.write("edgeexit: warning: {}\n".format(msg))
    sys.stderr.flush()


class BoardTarget:
    """Which board, through which Sysfs, and whether it is simulated (no lock, no writes)."""

    def __init__(self, board: BoardConfig, profile: FirmwareProfile, sysfs: Sysfs, simulated: bool,
                 sim: Any, tmpdir: Optional[str] = None) -> None:
        self.board = board
        self.profile = profile
        self.sysfs = sysfs
        self.simulated = simulated
        self.sim = sim  # SimulatedKernel for in-process simulation, else None
        self.tmpdir = tmpdir

    @property
    def root(self) -> Path:
        return self.sysfs.root

    def describe(self) -> str:
        how = ""
        if self.simulated:
            how = " SIMULATED ({})".format("FUSE mount" if self.sim is None else "in-process")
        return "board {} (kernel {} rules, {}) root {}{}".format(
            self.board.name, self.board.kernel, self.board.kernel_version, self.root, how)

    def cleanup(self) -> None:
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


def resolve_target(board: Optional[str] = "auto", sysfs_root: Optional[Path] = None,
                   simulate: bool = False) -> BoardTarget:
    """Pick the Sysfs explicitly (never silently simulated):

    - ``simulate=True``: a fresh temporary tree (`sim init`) + the in-process simulated kernel;
    - ``sysfs_root`` carrying the simulator's marker: in-process simulated kernel, or plain file I/O
      when it is the simulator's FUSE mount (which enforces the rules itself); both report SIMULATED;
    - otherwise plain file I/O on ``sysfs_root`` (default ``/``): a real board.
    """
    from edgeexit.sim.kernel import SimulatedKernel, read_marker

    name = board or "auto"
    if simulate:
        if sysfs_root is not None:
            raise DvfsError("--simulate makes its own temporary tree; leave out --sysfs-root (or drop --simulate "
                            "to use the tree at {})".format(sysfs_root))
        if name == "auto":
            raise BoardConfigError("--simulate needs --board NAME (see `edgeexit boards`)")
        cfg = load_board(name)
        tmp = tempfile.mkdtemp(prefix="edgeexit-sim-{}-".format(cfg.name))
        kernel = SimulatedKernel.create(Path(tmp) / "root", cfg)
        from edgeexit.sim.sysfs import SimulatedSysfs

        return BoardTarget(cfg, kernel.profile, SimulatedSysfs(kernel.root, kernel), True, kernel, tmp)

    root = Path(sysfs_root) if sysfs_root is not None else Path("/")
    if not root.is_dir():
        raise DvfsError("--sysfs-root {} is not a directory".format(root))
    marker = read_marker(root)
    if marker is not None:
        cfg = load_board(str(marker["board"])) if name == "auto" else load_board(name)
        if cfg.name != marker["board"]:
            raise BoardConfigError("{} simulates board {} but --board {} was given; pass --board {}".format(
                root, marker["board"], cfg.name, marker["board"]))
        from edgeexit.sim.fusefs import is_fuse_mount

        if is_fuse_mount(root):
            return BoardTarget(cfg, load_profile(cfg), HostSysfs(root), True, None)
        from edgeexit.sim.sysfs import SimulatedSysfs

        kernel = SimulatedKernel(root, cfg)
        return BoardTarget(cfg, kernel.profile, SimulatedSysfs(root, kernel), True, kernel)
    cfg = detect_board(root) if name == "auto" else load_board(name)
    return BoardTarget(cfg, load_profile(cfg), HostSysfs(root), False, None)


class BoardSession(BoardTarget):
    """A locked board with a :class:`DvfsController`; use as a context manager."""

    def __init__(self, target: BoardTarget, method: str = "auto") -> None:
        super().__init__(target.board, target.profile, target.sysfs, target.simulated, target.sim, target.tmpdir)
        self.method = method
        self.state_file = state_path(self.board.name, self.root)
        self._lock = BoardLock(self.board.name, self.root)
        self._snapshot = None  # type: Optional[Any]
        self._old_sigterm = None  # type: Any
        self.controller = DvfsController(self.board, self.sysfs, self._save, method)
        self.restored_stale = False

    def _save(self) -> None:
        self._snapshot = self.controller.snapshot()
        write_state(self.state_file, self.board.name, self.root, self.simulated, self._snapshot)

    def restore_stale(self) -> bool:
        """Restore a state file left by a killed run; True if there was one."""
        data = read_state(self.state_file, self.board.name)
        if data is None:
            return False
        DvfsController(self.board, self.sysfs, None, self.method).restore(data["domains"])
        self.state_file.unlink()
        return True

    def __enter__(self) -> "BoardSession":
        try:
            self._lock.acquire()
            if self.restore_stale():
                self.restored_stale = True
                _warn("found the saved state of an earlier run that did not finish ({}); restored the board's "
                      "clocks from it first".format(self.state_file))
        except BaseException:
            self._lock.release()
            self.cleanup()
            raise
        # SIGTERM -> SystemExit so the with-block unwinds and restores (the CLI does the same)
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)
        return self

    def close(self) -> None:
        try:
            if self._snapshot is not None:
                self.controller.restore(self._snapshot)
                self._snapshot = None
                self.state_file.unlink()
        finally:
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None
            self._lock.release()
            self.cleanup()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()


def _sigterm_to_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def open_board(board: Optional[str] = "auto", sysfs_root: Optional[Path] = None, simulate: bool = False,
               method: str = "auto") -> BoardSession:
    """Open a board for DVFS (see module doc); use ``with open_board(...) as session:``."""
    return BoardSession(resolve_target(board, sysfs_root, simulate), method)


def restore_board(board: str, sysfs_root: Optional[Path] = None) -> Dict[str, Any]:
    """`edgeexit restore`: restore from a state file left by a killed run (takes the lock)."""
    target = resolve_target(board, sysfs_root, False)
    session = BoardSession(target)
    session._lock.acquire()
    try:
        found = session.restore_stale()
    finally:
        session._lock.release()
    return {"board": target.board.name, "root": str(target.root), "simulated": target.simulated,
            "restored": found, "state_file": str(session.state_file)}


Callback = Callable[[], None]
