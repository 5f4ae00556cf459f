"""``open_board``: choose the sysfs (real, simulated in-process, or a FUSE mount), lock the board,
save before the first write, and restore on exit, exceptions, Ctrl-C and SIGTERM."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Set, Type

from edgeexit.boards.config import BoardConfig, load_board
from edgeexit.boards.detect import detect_board
from edgeexit.boards.profile import FirmwareProfile, load_profile
from edgeexit.boards.sysfs import HostSysfs, Sysfs
from edgeexit.boards.vcgencmd import Runner, arm_clock_reader, run_vcgencmd
from edgeexit.dvfs.controller import DvfsController, RestoreConflict, RestoreReport
from edgeexit.dvfs.signals import HELD, ignore_further_signals, signals_held
from edgeexit.dvfs.state import (PRIVATE_SIM_PREFIX, BoardLock, foreign_state_files, read_state, state_path,
                                 sweep_killed_simulations, write_state)
from edgeexit.errors import BoardConfigError, BoardDetectError, DvfsError, RestoreConflictError, StateFileError
from edgeexit.guards.thermal import ThermalGuard
from edgeexit.sim.vcgencmd import simulated_vcgencmd


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

    def vcgencmd(self) -> Runner:
        """How to run the Raspberry Pi's ``vcgencmd`` here: the real command, or on a simulated tree the
        answers its simulated firmware renders."""
        return simulated_vcgencmd(self.root) if self.simulated else run_vcgencmd

    def firmware_cpu_khz(self) -> Optional[Callable[[], Optional[int]]]:
        """A reader of the CPU clock that really runs where cpufreq cannot say (a Raspberry Pi's
        ``scaling_cur_freq`` echoes the request), else None."""
        return arm_clock_reader(self.vcgencmd()) if self.board.vendor == "raspberrypi" else None

    def show_idle_sensors(self) -> None:
        """On an in-process simulated tree, the sensors read the idle board at the clock the tree runs now,
        as a real sensor does once the load ends (a killed run may have left one half published)."""
        if self.sim is not None and self.tmpdir is None:
            from edgeexit.sim.physics import BoardPhysics
            from edgeexit.sim.sensors import publish_idle

            publish_idle(self.sim, self.board, BoardPhysics(self.profile))

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
        sweep_killed_simulations()  # a SIGKILLed --simulate run cannot delete its own tree
        tmp = tempfile.mkdtemp(prefix="{}{}-".format(PRIVATE_SIM_PREFIX, cfg.name))
        kernel = SimulatedKernel.create(Path(tmp) / "root", cfg)
        from edgeexit.sim.sysfs import SimulatedSysfs

        return BoardTarget(cfg, kernel.profile, SimulatedSysfs(kernel.root, kernel), True, kernel, tmp)

    root = Path(sysfs_root) if sysfs_root is not None else Path("/")
    check_mount_alive(root)
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
    require_cpufreq(cfg, root)
    return BoardTarget(cfg, load_profile(cfg), HostSysfs(root), False, None)


def check_mount_alive(root: Path) -> None:
    """A FUSE mount whose `edgeexit sim mount` process died answers every access with ENOTCONN."""
    try:
        os.stat(str(root))
    except OSError as err:
        if err.errno == errno.ENOTCONN:
            raise DvfsError("--sysfs-root {} is a FUSE mount whose server has stopped; unmount it with `edgeexit sim "
                            "umount {}` and mount it again".format(root, root)) from None


def require_cpufreq(cfg: BoardConfig, root: Path) -> None:
    """A real board shows its cpufreq policies; without one, --board names a board this machine is not
    (or its kernel lacks cpufreq), and every later read would end in a bare 'No such file'."""
    dirs = [root / p.relpath for p in cfg.cpu_policies]
    if not any(d.is_dir() for d in dirs):
        where = "this machine" if root == Path("/") else "the tree at {}".format(root)
        raise BoardDetectError(
            "{} does not exist, so {} is not a running {} (or its kernel has no cpufreq); on the board check "
            "--board (see `edgeexit boards`), elsewhere add --simulate or pass --sysfs-root DIR made by "
            "`edgeexit sim init`".format(dirs[0], where, cfg.name))


class BoardSession(BoardTarget):
    """A locked board with a :class:`DvfsController`; use as a context manager."""

    def __init__(self, target: BoardTarget, method: str = "auto", thermal_limit_mc: Optional[int] = None,
                 thermal_guard: bool = True) -> None:
        super().__init__(target.board, target.profile, target.sysfs, target.simulated, target.sim, target.tmpdir)
        self.method = method
        self.state_file = state_path(self.board.name, self.root)
        self._lock = BoardLock(self.board.name, self.root)
        self._snapshot = None  # type: Optional[Any]
        self._old_handlers = {}  # type: Dict[int, Any]
        self.guard = ThermalGuard(self.board, self.sysfs, thermal_limit_mc) if thermal_guard else None
        self.controller = DvfsController(self.board, self.sysfs, self._save, method, guard=self.guard,
                                         on_change=self._persist, actual_cpu_khz=self.firmware_cpu_khz())
        self.restored_stale = False
        self.restore_report = None  # type: Optional[RestoreReport]

    def _state_extra(self) -> Dict[str, Any]:
        return {"expected": self.controller.expected, "in_flight": sorted(self.controller.in_flight)}

    def _save(self) -> None:
        self._snapshot = self.controller.snapshot()
        write_state(self.state_file, self.board.name, self.root, self.simulated, self._snapshot, self._state_extra())

    def _persist(self) -> None:
        """Keep the state file's record of what edgeexit left in step with the controller's."""
        if self._snapshot is not None:
            write_state(self.state_file, self.board.name, self.root, self.simulated, self._snapshot,
                        self._state_extra())

    @property
    def restore_conflicts(self) -> List[RestoreConflict]:
        return list(self.restore_report.conflicts) if self.restore_report is not None else []

    def restore_stale(self, force: bool = False) -> bool:
        """Restore a state file left by a killed run; True if there was one.

        Domains someone else changed since that run are not overwritten (unless ``force``): the
        state file is then kept with just those domains and RestoreConflictError says what to do.
        """
        foreign = False
        if not self.state_file.exists():
            # a killed run by another user (root, or one through the udev rule) kept its state elsewhere
            others = foreign_state_files(self.board.name, self.root)
            if others:
                self.state_file, foreign = others[0], True
        data = read_state(self.state_file, self.board.name)
        if data is None:
            return False
        expected = data.get("expected") if isinstance(data.get("expected"), dict) else {}
        in_flight = set(data.get("in_flight") or [])  # type: Set[str]
        ctl = DvfsController(self.board, self.sysfs, None, self.method)
        own_paths = {d.relpath for d in ctl.domains}
        stray = [e.get("path") for e in data["domains"] if not isinstance(e, dict) or e.get("path") not in own_paths]
        if foreign and stray:  # another user's file may only name this board's own clock domains
            raise StateFileError("state file {} names {}, not a clock domain of {}; check the board with `edgeexit "
                                 "status`, then delete the file".format(self.state_file, stray[0], self.board.name))
        report = ctl.restore_checked(data["domains"], expected, in_flight, force=force)
        self.restore_report = report
        if report.conflicts:
            left = [e for e in data["domains"] if e.get("path") in {c.path for c in report.conflicts}]
            write_state(self.state_file, self.board.name, self.root, bool(data.get("simulated")), left,
                        {"expected": {k: v for k, v in expected.items() if k in {e["path"] for e in left}},
                         "in_flight": [], "conflicts": [c.describe() for c in report.conflicts]})
            raise RestoreConflictError(
                "board {}: {}; to keep the current values delete {}, to put the saved ones back run `edgeexit "
                "restore --force`".format(self.board.name, "; ".join(c.describe() for c in report.conflicts),
                                          self.state_file))
        self.state_file.unlink()
        return True

    def __enter__(self) -> "BoardSession":
        try:
            self._lock.acquire()
            try:
                with signals_held():
                    if self.restore_stale():
                        self.restored_stale = True
                        _warn("found the saved state of an earlier run that did not finish ({}); restored the "
                              "board's clocks from it first".format(self.state_file))
            finally:
                self.state_file = state_path(self.board.name, self.root)  # this run's own, whoever left that one
        except BaseException:
            self._lock.release()
            self.cleanup()
            raise
        if threading.current_thread() is threading.main_thread():
            # SIGTERM -> SystemExit so the with-block unwinds and restores (the CLI does the same); the first
            # Ctrl-C or SIGTERM unwinds, later ones are ignored until close() has put the board back.
            self._old_handlers = {s: signal.getsignal(s) for s in HELD}
            if self._old_handlers[signal.SIGTERM] == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _sigterm_to_exit)
            if self._old_handlers[signal.SIGINT] is signal.default_int_handler:
                signal.signal(signal.SIGINT, _first_interrupt_only)
        return self

    def close(self) -> None:
        try:
            if self._snapshot is not None:
                with signals_held():  # a second Ctrl-C waits until the board is back
                    # raises (keeping the state file for `edgeexit restore`) when a domain cannot be written
                    report = self.controller.restore_checked(self._snapshot)
                    self.restore_report = report
                    for c in report.conflicts:
                        _warn(c.describe())  # the user sees the saved values here; nothing is kept for later
                    self._snapshot = None
                    try:
                        self.state_file.unlink()
                    except FileNotFoundError:  # already gone (someone ran `edgeexit restore` meanwhile)
                        pass
            self.show_idle_sensors()
        finally:
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            self._old_handlers = {}
            # a --simulate tree is private and deleted next: its lock file would only pile up
            self._lock.release(remove=self.tmpdir is not None)
            self.cleanup()

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()


def _sigterm_to_exit(signum: int, frame: Any) -> None:
    ignore_further_signals()
    raise SystemExit(128 + signum)


def _first_interrupt_only(signum: int, frame: Any) -> None:
    ignore_further_signals()
    raise KeyboardInterrupt


def open_board(board: Optional[str] = "auto", sysfs_root: Optional[Path] = None, simulate: bool = False,
               method: str = "auto", thermal_limit_mc: Optional[int] = None,
               thermal_guard: bool = True) -> BoardSession:
    """Open a board for DVFS (see module doc); use ``with open_board(...) as session:``.

    ``thermal_limit_mc``: hold clocks (never raise them) while any thermal zone is at or above this
    (m°C); default: each zone's own passive trip point (see edgeexit.guards.thermal).
    """
    return BoardSession(resolve_target(board, sysfs_root, simulate), method, thermal_limit_mc, thermal_guard)


def restore_board(board: str, sysfs_root: Optional[Path] = None, force: bool = False) -> Dict[str, Any]:
    """`edgeexit restore`: restore from a state file left by a killed run (takes the lock).

    Raises RestoreConflictError when someone else changed a domain since (see restore_stale);
    ``force=True`` restores the saved values over their change.
    """
    target = resolve_target(board, sysfs_root, False)
    session = BoardSession(target, thermal_guard=False)
    session._lock.acquire()
    try:
        with signals_held():
            found = session.restore_stale(force=force)
        if found:
            session.show_idle_sensors()
    finally:
        session._lock.release()
    return {"board": target.board.name, "root": str(target.root), "simulated": target.simulated,
            "restored": found, "state_file": str(session.state_file)}


Callback = Callable[[], None]
