"""``open_board``: choose the sysfs (real, simulated in-process, or a FUSE mount), lock the board,
save before the first write, and restore on exit, exceptions, Ctrl-C and SIGTERM."""
from __future__ import annotations

import errno
import os
import pwd
import re
import reprlib
import shlex
import shutil
import signal
import tempfile
import threading
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Type

from edgeexit.boards.config import BoardConfig, load_board
from edgeexit.boards.detect import detect_board
from edgeexit.boards.profile import FirmwareProfile, load_profile
from edgeexit.boards.sysfs import HostSysfs, Sysfs
from edgeexit.boards.vcgencmd import Runner, arm_clock_reader, run_vcgencmd
from edgeexit.dvfs.controller import DvfsController, RestoreConflict
from edgeexit.dvfs.domains import FreqDomain
from edgeexit.signals import HELD, handle_terminating, ignore_further_signals, note_caught, signal_answered, signals_held
from edgeexit.dvfs.state import (PRIVATE_SIM_PREFIX, SAVED_FIELDS, BoardLock, ForeignState, claim_tree, foreign_states,
                                 node_writable, read_state, record_problem, release_tree, remove_foreign, saved_problem,
                                 restore_command, short_error, state_path, sweep_killed_simulations, user_groups, write_state)
from edgeexit.errors import (BoardConfigError, BoardDetectError, DvfsError, RestoreConflictError, StateFileError,
                             warn_stderr)
from edgeexit.guards.thermal import ThermalGuard
from edgeexit.jsonvalues import is_finite_number
from edgeexit.sim.vcgencmd import simulated_vcgencmd


#: Per domain kind, every node a run may write (pins and restores): whoever can write none of a board's
#: cannot pin it.
CLOCK_NODES = {"cpu": ("scaling_governor", "scaling_min_freq", "scaling_max_freq", "scaling_setspeed"),
               "gpu": ("governor", "min_freq", "max_freq", "userspace/set_freq")}


def _saved_at(data: Dict[str, Any]) -> float:
    t = data.get("saved_at")
    return float(t) if is_finite_number(t) else 0.0  # a hand-made file's 10**400 or NaN reads as unknown


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def _saved_fields(dom: FreqDomain) -> Tuple[str, ...]:
    """What ``dom.save()`` writes, the userspace request last (see also _optional_fields)."""
    always, request, _ = SAVED_FIELDS[dom.kind]
    return always + (request,)


def _optional_fields(dom: FreqDomain) -> Tuple[str, ...]:
    """What ``dom.save()`` writes only sometimes: a devfreq device's clock in userspace with no request."""
    return SAVED_FIELDS[dom.kind][2]


def _plain_saved(dom: FreqDomain, saved: Any) -> str:
    """Why ``saved`` is not what ``dom.save()`` writes (dvfs.state.saved_problem: unsigned decimal integers,
    the userspace request or None) with a governor the domain offers, or "". Another user wrote it:
    nothing else is restored."""
    problem = saved_problem(dom.kind, saved, dom.relpath)
    if problem:
        return problem
    gov = saved.get("governor")
    try:
        offered = dom.governors()
    except OSError:  # an offline policy may answer EBUSY: then a plain name at least
        offered = [gov] if isinstance(gov, str) and re.match(r"[A-Za-z0-9_]{1,32}\Z", gov) else []
    if not isinstance(gov, str) or gov not in offered:
        return "its saved governor for {} is {}, not one the domain offers".format(dom.relpath, _SHORT.repr(gov))
    return ""


def _plain_record(exp: Any, flying: Any, paths: Set[str]) -> bool:
    """Whether ``expected`` and ``in_flight`` of another user's file are as write_state writes them
    (dvfs.state.record_problem), with short values and only this board's domains in flight."""
    if record_problem({"expected": exp, "in_flight": flying}):
        return False
    return all(x is None or len(x) <= 64 for v in (exp or {}).values() for x in v.values()) and \
        all(p in paths for p in (flying or []))


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
        # A --simulate tree goes with an owner never entered (dropped, or raising while it was made). Once a
        # session is entered its close deletes the tree, or after a kill the sweep does, with the lock and state.
        self._remove_tmpdir = weakref.finalize(self, _remove_tree, tmpdir, os.getpid()) if tmpdir else None

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
        self.hand_over()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            release_tree(self.tmpdir)
            self.tmpdir = None

    def hand_over(self) -> Optional[str]:
        """The temporary tree, no longer deleted with this object (a session made from this target, or an
        entered session, deletes it)."""
        if self._remove_tmpdir is not None:
            self._remove_tmpdir.detach()
            self._remove_tmpdir = None
        return self.tmpdir


def _remove_tree(path: str, owner_pid: int) -> None:
    """Delete a --simulate tree, in the process that made it only: a forked child inherits the finalizer."""
    if os.getpid() == owner_pid:
        shutil.rmtree(path, ignore_errors=True)
    release_tree(path)


def resolve_target(board: Optional[str] = "auto", sysfs_root: Optional[Path] = None,
                   simulate: bool = False, offer_simulate: bool = True) -> BoardTarget:
    """Pick the Sysfs explicitly (never silently simulated):

    - ``simulate=True``: a fresh temporary tree (`sim init`) + the in-process simulated kernel;
    - ``sysfs_root`` carrying the simulator's marker: in-process simulated kernel, or plain file I/O
      when it is the simulator's FUSE mount (which enforces the rules itself); both report SIMULATED;
    - otherwise plain file I/O on ``sysfs_root`` (default ``/``): a real board.

    ``offer_simulate``: whether the command has --simulate to suggest when this machine is no such board.
    """
    from edgeexit.sim.kernel import SimulatedKernel, check_profile_digest, read_marker

    name = board or "auto"
    if not isinstance(name, str):
        raise BoardConfigError("board {!r} is not a board name; pass one from `edgeexit boards` (e.g. 'jetson-nano') "
                               "or 'auto'".format(name))
    if simulate:
        if sysfs_root is not None:
            raise DvfsError("--simulate makes its own temporary tree; leave out --sysfs-root (or drop --simulate "
                            "to use the tree at {})".format(sysfs_root))
        if name == "auto":
            raise BoardConfigError("--simulate needs a board name, not auto: pass --board NAME (see `edgeexit boards`)")
        cfg = load_board(name)
        sweep_killed_simulations()  # a SIGKILLed --simulate run cannot delete its own tree
        tmp = tempfile.mkdtemp(prefix="{}{}-".format(PRIVATE_SIM_PREFIX, cfg.name))
        try:
            claim_tree(tmp)  # held until the tree is deleted: a kill from here on leaves it to the sweep
            kernel = SimulatedKernel.create(Path(tmp) / "root", cfg)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            release_tree(tmp)
            raise
        from edgeexit.sim.sysfs import SimulatedSysfs

        return BoardTarget(cfg, kernel.profile, SimulatedSysfs(kernel.root, kernel), True, kernel, tmp)

    root = Path(sysfs_root) if sysfs_root is not None else Path("/")
    check_mount_alive(root)
    if not root.is_dir():
        raise DvfsError("--sysfs-root {} is not a directory; pass / on the board, or a tree made by `edgeexit sim "
                        "init`".format(root))
    marker = read_marker(root)
    if marker is not None:
        cfg = load_board(str(marker["board"])) if name == "auto" else load_board(name)
        if cfg.name != marker["board"]:
            raise BoardConfigError("{} simulates board {} but --board {} was given; pass --board {}".format(
                root, marker["board"], cfg.name, marker["board"]))
        from edgeexit.sim.fusefs import is_fuse_mount

        if is_fuse_mount(root):
            profile = load_profile(cfg)
            check_profile_digest(root, marker, profile)  # the server checked its own profile, not this one
            return BoardTarget(cfg, profile, HostSysfs(root), True, None)
        from edgeexit.sim.sysfs import SimulatedSysfs

        kernel = SimulatedKernel(root, cfg)
        return BoardTarget(cfg, kernel.profile, SimulatedSysfs(root, kernel), True, kernel)
    cfg = detect_board(root) if name == "auto" else load_board(name)
    require_cpufreq(cfg, root, offer_simulate)
    return BoardTarget(cfg, load_profile(cfg), HostSysfs(root), False, None)


def fuse_server_gone(root: Path) -> bool:
    """Whether ``root`` is a FUSE mount whose `edgeexit sim mount` process died (it answers every access
    with ENOTCONN)."""
    try:
        os.stat(str(root))
    except OSError as err:
        return err.errno == errno.ENOTCONN
    return False


def check_mount_alive(root: Path) -> None:
    """One line naming the fix where ``root``'s `edgeexit sim mount` server has died."""
    if fuse_server_gone(root):
        raise DvfsError("--sysfs-root {} is a FUSE mount whose server has stopped; unmount it with `edgeexit sim "
                        "umount {}` and mount it again".format(root, root))


def require_cpufreq(cfg: BoardConfig, root: Path, offer_simulate: bool = True) -> None:
    """A real board shows its cpufreq policies; without one, --board names a board this machine is not
    (or its kernel lacks cpufreq), and every later read would end in a bare 'No such file'."""
    dirs = [root / p.relpath for p in cfg.cpu_policies]
    if not any(d.is_dir() for d in dirs):
        where = "this machine" if root == Path("/") else "the tree at {}".format(root)
        raise BoardDetectError(
            "{} does not exist, so {} is not a running {} (or its kernel has no cpufreq); on the board check "
            "--board (see `edgeexit boards`), elsewhere {}pass --sysfs-root DIR made by `edgeexit sim init`".format(
                dirs[0], where, cfg.name, "add --simulate or " if offer_simulate else ""))


class BoardSession(BoardTarget):
    """A locked board with a :class:`DvfsController`; use as a context manager."""

    def __init__(self, target: BoardTarget, method: str = "auto", thermal_limit_mc: Optional[int] = None,
                 thermal_guard: bool = True, warn: Optional[Callable[[str], None]] = None) -> None:
        super().__init__(target.board, target.profile, target.sysfs, target.simulated, target.sim, target.hand_over())
        self.method = method
        self._entered = self._closed = False
        self.state_file = state_path(self.board.name, self.root)
        self._lock = BoardLock(self.board.name, self.root, self._may_pin)
        self._snapshot = None  # type: Optional[Any]
        self._old_handlers = {}  # type: Dict[int, Any]
        try:
            self.guard = ThermalGuard(self.board, self.sysfs, thermal_limit_mc) if thermal_guard else None
            self.controller = DvfsController(self.board, self.sysfs, self._save, method, guard=self.guard,
                                             on_change=self._persist, actual_cpu_khz=self.firmware_cpu_khz(), warn=warn)
            self.controller.retry_hint = "run `{}` to retry".format(restore_command(self.board.name, self.root))
        except BaseException:
            self.cleanup()
            raise
        self.restored_stale = False
        self.restored_files = []  # type: List[Path]
        self.restore_report = None  # type: Optional[RestoreReport]

    def _may_pin(self, uid: int, groups: Optional[Set[int]] = None) -> bool:
        """Could ``uid`` holding ``groups`` (None: its passwd and group entries') write any of this board's
        clock nodes (see BoardLock)?"""
        if groups is None:
            groups = user_groups(uid)
        return any(node_writable(uid, groups, self.root / d.relpath / n)
                   for d in self.controller.domains for n in CLOCK_NODES.get(d.kind, CLOCK_NODES["cpu"]))

    def _state_extra(self) -> Dict[str, Any]:
        ctl = self.controller
        return {"expected": ctl.expected, "in_flight": sorted(ctl.in_flight | ctl.kept_in_flight)}

    def _save(self) -> None:
        if not self._entered:  # no lock held, and nothing would restore what is written
            raise DvfsError("board {}'s session is not open, so nothing would save and restore its clocks; use "
                            "`with open_board(...) as session:`{}".format(
                                self.board.name, ", and a new one after it is closed" if self._closed else ""))
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
        """Restore the state files killed runs left; True if there was one.

        This user's own, and the ones other users' runs left (see foreign_states). Another user's file
        is used only if it names this board's own clock domains with plain values (see _plain_saved) and
        its owner could have written every node its restore writes: anyone can create /tmp/edgeexit-<their
        uid>, and without this any user could make root write the clocks of their choosing. Others are
        ignored with one warning line, whatever is wrong with them. Several are restored newest first: a
        run that started on the clocks an earlier killed run pinned saved those as the board's own, so the
        pile is undone from the top.

        Only root restores another user's state. Another user could put the clocks back but not delete
        the file (root's /run/edgeexit is root's alone), so every later run would restore it again, and a
        conflict could not be kept in it; going on without it would save the pinned clocks as the
        board's own. Such a file stops the run with one line naming `sudo edgeexit restore`.

        Domains someone else changed since that run are not overwritten (unless ``force``): the state
        file is then kept with just those domains, the older files wait, and RestoreConflictError says
        what to do. What is left of another user's file is kept in this user's own runtime dir, under the
        same name (found there as this user's own by the next restore), and that user's file is deleted:
        nothing is ever written into another user's directory, which that user can swap for a symlink to
        any directory while we work (see remove_foreign).
        """
        own_path = state_path(self.board.name, self.root)
        pile = []  # type: List[Tuple[float, Path, Dict[str, Any], Optional[ForeignState]]]
        own = read_state(own_path, self.board.name)
        if own is not None:
            pile.append((_saved_at(own), own_path, own, None))
        me = os.geteuid()
        for found in foreign_states(self.board.name, self.root):
            try:
                data, problem = self._vet(found)
            except Exception as err:  # noqa: BLE001 - deliberately everything
                # Another user wrote it: whatever checking it raises (RecursionError, OverflowError, ...)
                # must make it ignored, never end the run, or any user could stop every root run.
                data, problem = None, "it cannot be checked ({})".format(short_error(err))
            if me not in (0, found.uid) and (not problem or (found.uid == 0 and found.data is None)):
                raise StateFileError(
                    "{} left the saved state of a run on board {} that did not finish ({}), and only {} can restore "
                    "and delete it: run `{}`{}, then run again".format(
                        "root" if found.uid == 0 else "user {}".format(_user_name(found.uid)), self.board.name,
                        found.path, "root" if found.uid == 0 else "that user or root",
                        restore_command(self.board.name, self.root, sudo=True),
                        "" if found.uid == 0 else " (or that user, without sudo)"))
            if problem or data is None:
                warn_stderr("ignoring the state file {}: {}".format(found.path, problem))
                continue
            pile.append((_saved_at(data), found.path, data, found))
        pile.sort(key=lambda item: item[0], reverse=True)
        self.restored_files = []
        for i, (_, path, data, found) in enumerate(pile):
            self.state_file = path
            exp, flying = data.get("expected"), data.get("in_flight")
            expected = {k: v for k, v in exp.items() if isinstance(v, dict)} if isinstance(exp, dict) else {}
            in_flight = set()  # type: Set[str]
            if isinstance(flying, list):
                in_flight = {p for p in flying if isinstance(p, str)}
            # Before a restore's first write to a domain, this file says the domain is in flight (as a run's
            # does): a restore killed half way is then completed by the next one, not taken for someone
            # else's change. Another user's file is marked in a copy in this user's own runtime dir (never
            # written into theirs), unless an own file still waits below it (it would be overwritten).
            waiting_own = any(f is None for (_, _, _, f) in pile[i + 1:])
            mark = path if found is None else (None if waiting_own else own_path)
            ctl = DvfsController(self.board, self.sysfs, None, self.method,
                                 on_change=self._marker(mark, data, expected, in_flight))
            report = ctl.restore_checked(data["domains"], expected, in_flight, force=force)
            self.restore_report = report
            if found is not None and mark is not None and not report.conflicts:
                try:
                    mark.unlink()  # the marked copy of another user's file: done with it
                except FileNotFoundError:
                    pass
            if report.conflicts:
                more = len(pile) - i - 1
                keep = path
                if found is not None and not any(f is None for (_, _, _, f) in pile[i + 1:]):
                    keep = own_path  # (an own file still waiting below it would be overwritten: then it stays)
                if keep != path or found is None:
                    left = [e for e in data["domains"] if e.get("path") in {c.path for c in report.conflicts}]
                    write_state(keep, self.board.name, self.root, bool(data.get("simulated")), left,
                                {"expected": {k: v for k, v in expected.items() if k in {e["path"] for e in left}},
                                 "in_flight": [], "conflicts": [c.describe() for c in report.conflicts]})
                if keep != path:
                    assert found is not None
                    why = remove_foreign(path, found.uid)
                    if why:
                        warn_stderr("kept what is left of the state file {} in {}, but could not delete it ({}); delete "
                              "it by hand".format(path, keep, why))
                self.state_file = keep
                raise RestoreConflictError(
                    "board {}: {}; to keep the current values delete {}, to put the saved ones back run `edgeexit "
                    "restore --board {}{} --force`{}".format(
                        self.board.name, "; ".join(c.describe() for c in report.conflicts), keep, self.board.name,
                        "" if Path(self.root) == Path("/") else " --sysfs-root {}".format(self.root),
                        "" if not more else " ({} older saved state file{} of killed runs wait{} for it)".format(
                            more, "s" if more > 1 else "", "" if more > 1 else "s")))
            if found is None:
                try:
                    path.unlink()
                except FileNotFoundError:  # someone else restored it meanwhile
                    pass
            else:
                why = remove_foreign(path, found.uid)
                if why:
                    warn_stderr("restored the board from the state file {}, but could not delete it ({}); delete it by "
                          "hand, or the next restore puts it back again".format(path, why))
            self.restored_files.append(path)
        return bool(self.restored_files)

    def _marker(self, mark: Optional[Path], data: Dict[str, Any], expected: Dict[str, Any],
                in_flight: Set[str]) -> Callable[[], None]:
        """The on_change of a restoring controller: rewrite ``mark`` with the domains now in flight."""
        def persist() -> None:
            if mark is None:
                return
            flying = sorted(in_flight)  # the set the controller adds to (restore_checked updates it)
            extra = {"expected": expected, "in_flight": flying, "saved_at": _saved_at(data)}  # type: Dict[str, Any]
            if data.get("conflicts"):
                extra["conflicts"] = data["conflicts"]
            write_state(mark, self.board.name, self.root, bool(data.get("simulated")), data["domains"], extra)
        return persist

    def _vet(self, found: ForeignState) -> Tuple[Optional[Dict[str, Any]], str]:
        """Another user's state file as it may be restored here (only what a run writes, rebuilt from
        checked values), or (None, why not) (see restore_stale)."""
        if found.data is None:
            return None, found.problem
        by_path = {d.relpath: d for d in DvfsController(self.board, self.sysfs, None, self.method).domains}
        entries = found.data["domains"]
        domains = []  # type: List[Dict[str, Any]]
        for e in entries:
            where = e.get("path") if isinstance(e, dict) else e
            if not isinstance(where, str) or where not in by_path:
                return None, "it names {}, not a clock domain of {}".format(_SHORT.repr(where), self.board.name)
            dom = by_path[where]
            if found.uid == 0:  # root's own: trusted as it is
                domains.append(e)
                continue
            if e.get("kind") != dom.kind or not isinstance(e.get("name"), str) or len(e["name"]) > 64:
                return None, "its entry for {} is not one a run on {} saves".format(where, self.board.name)
            problem = _plain_saved(dom, e.get("saved"))
            if problem:
                return None, problem
            saved = {k: e["saved"].get(k) for k in _saved_fields(dom)}  # type: Dict[str, Any]
            saved.update({k: e["saved"][k] for k in _optional_fields(dom) if e["saved"].get(k) is not None})
            domains.append({"kind": dom.kind, "name": e["name"], "path": where, "saved": saved})
        data = dict(found.data)
        data["domains"] = domains
        if found.uid == 0:
            return data, ""
        exp, flying = found.data.get("expected"), found.data.get("in_flight")
        if not _plain_record(exp, flying, set(by_path)):
            return None, "its record of what edgeexit left on the board is not one a run writes"
        data = {"board": self.board.name, "domains": domains, "expected": exp or {}, "in_flight": flying or [],
                "saved_at": _saved_at(found.data), "simulated": found.data.get("simulated") is True}
        nodes = []  # type: List[str]
        # the nodes its restore would write: the domains' own restore, with the writes only noted
        for e in domains:
            by_path[e["path"]].restore(dict(e["saved"]), lambda rel, value: nodes.append(rel))
        groups = user_groups(found.uid)
        for rel in nodes:
            if not node_writable(found.uid, groups, self.root / rel):
                return None, "its owner (uid {}) cannot write {}, so it is not that user's to restore".format(
                    found.uid, self.root / rel)
        return data, ""

    def __enter__(self) -> "BoardSession":
        if self._closed or self._entered:
            raise DvfsError("board {}'s session is {}; open a new one with `with open_board(...) as session:`".format(
                self.board.name, "closed" if self._closed else "open already"))
        try:
            self._lock.acquire()
            try:
                with signals_held():
                    if self.restore_stale():
                        self.restored_stale = True
                        warn_stderr("found the saved state of an earlier run that did not finish ({}); restored the "
                              "board's clocks from it first".format(", ".join(str(p) for p in self.restored_files)))
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
            handle_terminating()  # SIGTERM, a hang-up, Ctrl-\: each left at SIG_DFL unwinds as SystemExit
            if self._old_handlers[signal.SIGINT] is signal.default_int_handler:
                signal.signal(signal.SIGINT, _first_interrupt_only)
        self._entered = True
        self.hand_over()  # close deletes the tree now, or the sweep with its lock and state after a kill
        return self

    def check_open(self) -> None:
        """Raise unless the session is entered and not yet closed (a run on it would write unsaved clocks)."""
        if not self._entered:
            raise DvfsError("board {}'s session is {}; run inside `with open_board(...) as session:`".format(
                self.board.name, "closed" if self._closed else "not open"))

    def close(self) -> None:
        if self._closed:
            return
        if not self._entered:  # nothing locked or written: only a --simulate tree to delete
            self._closed = self.controller.closed = True
            self.cleanup()
            return
        try:
            # a Ctrl-C waits until the board is back, its sensors included: raised at the block's end, it
            # would skip them, and no later `restore` republishes an idle board it finds nothing to restore on
            with signals_held():
                if self._snapshot is not None:
                    # raises (keeping the state file for `edgeexit restore`) when a domain cannot be written
                    try:
                        report = self.controller.restore_checked(self._snapshot)
                    except DvfsError:
                        self._raise_if_server_gone()
                        raise
                    self.restore_report = report
                    for c in report.conflicts:
                        warn_stderr(c.describe())  # the user sees the saved values here; nothing is kept for later
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
            self.controller.closed = True  # restored, or its state file kept for `edgeexit restore`: no more writes
            self._entered, self._closed = False, True
            # a --simulate tree is private and deleted next: its lock file would only pile up
            self._lock.release(remove=self.tmpdir is not None)
            self.cleanup()

    def _raise_if_server_gone(self) -> None:
        """A FUSE mount whose server died mid-run fails every restore write with ENOTCONN; `edgeexit restore`
        works again only once the same backing tree is served there again."""
        if not fuse_server_gone(self.root):
            return
        raise DvfsError("the FUSE server of --sysfs-root {} stopped during the run, so the board was not put back "
                        "(its saved state is kept): `edgeexit sim umount {}`, mount the same --backing tree there "
                        "again with `edgeexit sim mount`, then run `{}`".format(
                            self.root, shlex.quote(str(self.root)), restore_command(self.board.name, self.root))) from None

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()
        if exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            signal_answered()  # seen unwinding: answered, not swallowed (see edgeexit.signals)


def _user_name(uid: int) -> str:
    try:
        return "{} (uid {})".format(pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid {}".format(uid)


def _first_interrupt_only(signum: int, frame: Any) -> None:
    note_caught(signum)
    ignore_further_signals()
    raise KeyboardInterrupt


def open_board(board: Optional[str] = "auto", sysfs_root: Optional[Path] = None, simulate: bool = False,
               method: str = "auto", thermal_limit_mc: Optional[int] = None,
               thermal_guard: bool = True, warn: Optional[Callable[[str], None]] = None) -> BoardSession:
    """Open a board for DVFS (see module doc); use ``with open_board(...) as session:``.

    ``thermal_limit_mc``: hold clocks (never raise them) while any thermal zone is at or above this
    (m°C); default: each zone's own passive trip point (see edgeexit.guards.thermal). ``warn``: where the
    controller's warnings go (default: one line on stderr each).
    """
    return BoardSession(resolve_target(board, sysfs_root, simulate), method, thermal_limit_mc, thermal_guard, warn)


def restore_board(board: str, sysfs_root: Optional[Path] = None, force: bool = False) -> Dict[str, Any]:
    """`edgeexit restore`: restore from a state file left by a killed run (takes the lock).

    Raises RestoreConflictError when someone else changed a domain since (see restore_stale);
    ``force=True`` restores the saved values over their change.
    """
    done = False
    try:
        target = resolve_target(board, sysfs_root, False, offer_simulate=False)
        session = BoardSession(target, thermal_guard=False)
        session._lock.acquire()
        try:
            with signals_held():
                found = session.restore_stale(force=force)
                # A simulated tree's sensors read idle after a restore even when no clock was saved: a run killed
                # before it pinned anything (a --dvfs governor run, a host-clocked one) left them at load.
                session.show_idle_sensors()
                done = True  # a Ctrl-C held until here is raised as the block ends, after the restore
        finally:
            session._lock.release()
    except KeyboardInterrupt:
        if done:
            raise
        # a bare "interrupted" would not say that the saved state is still there, unrestored
        raise KeyboardInterrupt("interrupted before the restore finished; run `edgeexit restore` again, with the "
                                "same options, to finish it") from None
    files = [str(p) for p in session.restored_files]
    return {"board": target.board.name, "root": str(target.root), "simulated": target.simulated,
            "restored": found, "state_file": ", ".join(files) if files else str(session.state_file),
            "state_files": files}


Callback = Callable[[], None]
