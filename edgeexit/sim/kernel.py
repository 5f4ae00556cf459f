"""The simulated kernel: a sysfs tree on disk whose writes follow the board kernel's rules.

State lives in files under the tree (the visible sysfs files plus ``.edgeexit-sim/state.json`` for
what the kernel keeps but does not show: QoS requests, the userspace governor's request), so it
survives the process that wrote it. :class:`edgeexit.sim.sysfs.SimulatedSysfs` (in-process) and
:mod:`edgeexit.sim.fusefs` (FUSE mount) both call :meth:`SimulatedKernel.write`.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import hashlib
import json
import os
import posixpath
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from edgeexit.boards.config import KERNEL_FAMILIES, BoardConfig, load_board
from edgeexit.boards.profile import FirmwareProfile, load_profile
from edgeexit.boards.sysfs import read_file
from edgeexit.errors import BoardConfigError, DvfsError, warn_stderr
from edgeexit.signals import HELD
from edgeexit.sim import rules

SIM_DIR = ".edgeexit-sim"
MARKER = SIM_DIR + "/board.json"  # says which board and kernel family the tree simulates
STATE = SIM_DIR + "/state.json"
SERVED_FROM = SIM_DIR + "/served-from"  # while `sim mount` serves the tree: its real path (one lock for both views)
# Injected faults (tests): one-shot errnos and firmware clock overrides. Kept in the tree, not in
# memory, so the FUSE server and a child `edgeexit run` see what a test injected; removed once empty.
FAULTS = SIM_DIR + "/faults.json"
VCGENCMD_DIR = SIM_DIR + "/vcgencmd"  # what `vcgencmd ARGS` would print, in <ARGS joined by _> (Raspberry Pi)
PMIC_ADC = VCGENCMD_DIR + "/pmic_read_adc"  # Pi 5 only
MEASURE_CLOCK_ARM = VCGENCMD_DIR + "/measure_clock_arm"
MARKER_FORMAT = 1
CPU_DIR = "sys/devices/system/cpu"
RO, RW, ROOT_ONLY = 0o444, 0o644, 0o400
SHUNT_MOHM = 5  # INA3221 shunt on the Jetson modules (assumption), for the shunt-voltage files
# In state.json while a store() is being shown in the visible files: a write saves the new state (with this
# key) first, renders it, then saves it again without. A process killed in between leaves the key, and the
# next kernel on the tree renders that state again: the visible files and state.json never disagree.
RENDER_PENDING = "render_pending"
# put()'s temporary files: ".tmp-<writer pid>-<random>", beside the file they replace (os.replace must not
# cross file systems). A writer killed with SIGKILL leaves its one; the next kernel on the tree deletes it.
TMP_PREFIX = ".tmp-"


def corrupt(root: Path, what: str, detail: str, fix: str = "make a new one with `edgeexit sim init`") -> DvfsError:
    """A simulated tree's own file with the wrong shape. Also an OSError with errno EUCLEAN ("Structure needs
    cleaning"), which no real sysfs node returns: through a FUSE mount only the errno reaches the writer,
    and the controller names the fix from it."""
    err = DvfsError("the simulated tree {}'s {} is corrupt ({}); {}".format(root, what, detail, fix))
    err.errno = errno.EUCLEAN
    return err


def _uint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _state_problem(state: Any, board: BoardConfig, has_gpu: bool) -> str:
    """Why ``state`` is not a state.json the simulator writes for ``board`` (``""`` when it is one)."""
    if not isinstance(state, dict):
        return "it holds {}, not an object".format(type(state).__name__)
    online = state.get("online")
    cpus = [str(c) for c in range(board.possible_cpus)]
    if not isinstance(online, dict) or sorted(online) != sorted(cpus) or \
            not all(online[c] in (0, 1) and not isinstance(online[c], bool) for c in cpus):
        return "'online' is not a 0/1 value for each of CPUs 0-{}".format(board.possible_cpus - 1)
    cpufreq = state.get("cpufreq")
    if not isinstance(cpufreq, dict):
        return "'cpufreq' is missing"
    for pol in board.cpu_policies:
        ps = cpufreq.get(pol.name)
        if not isinstance(ps, dict) or not isinstance(ps.get("governor"), str) or \
                not all(_uint(ps.get(k)) for k in ("min", "max", "cur")) or \
                not (ps.get("setspeed") is None or _uint(ps.get("setspeed"))):
            return "'cpufreq' has no valid entry for {}".format(pol.name)
    ds = state.get("devfreq")
    if has_gpu and (not isinstance(ds, dict) or not isinstance(ds.get("governor"), str) or
                    not all(_uint(ds.get(k)) for k in ("min", "max", "cur")) or
                    not (ds.get("set_freq") is None or _uint(ds.get("set_freq")))):
        return "'devfreq' has no valid entry for the GPU"
    if not isinstance(state.get("pmic", {}), dict):
        return "'pmic' is not an object"
    if not isinstance(state.get(RENDER_PENDING, False), bool):
        return "{!r} is not true or false".format(RENDER_PENDING)
    return ""


def _faults_problem(faults: Any) -> str:
    """Why ``faults`` is not a faults.json :meth:`SimulatedKernel.inject_error` writes (``""`` when it is one)."""
    if not isinstance(faults, dict):
        return "it holds {}, not an object".format(type(faults).__name__)
    for op in ("write", "read"):
        entries = faults.get(op, [])
        if not isinstance(entries, list) or not all(
                isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("errno"), str)
                and _uint(f.get("skip", 0)) and _uint(f.get("count", 1)) for f in entries):
            return "{!r} is not a list of faults".format(op)
    clocks = faults.get("firmware_clock", {})
    if not isinstance(clocks, dict) or not all(
            isinstance(v, dict) and all(v.get(k) is None or _uint(v.get(k)) for k in ("floor_khz", "cap_khz"))
            for v in clocks.values()):
        return "'firmware_clock' is not a set of clock overrides"
    return ""


STALE_TMP_S = 60.0  # no put() lasts this long: an older temporary file is a dead writer's, whatever its pid says


_NAMESPACE = None  # type: Optional[str]


def _pid_namespace() -> str:
    """This process's PID namespace (the inode of /proc/self/ns/pid), or "" where it cannot be read: a pid in
    a temporary file's name means something only to a process in the writer's namespace."""
    global _NAMESPACE
    if _NAMESPACE is None:  # fixed for a process's life (a fork stays in it): read once, not on every put()
        try:
            _NAMESPACE = str(os.stat("/proc/self/ns/pid").st_ino)
        except OSError:
            _NAMESPACE = ""
    return _NAMESPACE


def writer_tag() -> str:
    """What put() names its temporary files after: ``<pid>@<pid namespace>``."""
    return "{}@{}".format(os.getpid(), _pid_namespace())


def _writer_alive(name: str, age_s: float) -> bool:
    """Whether the process that made temporary file ``name`` (see TMP_PREFIX) may still be writing it."""
    pid, _, namespace = name[len(TMP_PREFIX):].split("-", 1)[0].partition("@")
    if not pid.isdigit():
        return True  # not ours to judge
    if age_s >= STALE_TMP_S:
        return False  # its pid may have been reused since
    if namespace != _pid_namespace():
        return True  # a writer in another container: its pid names another process here; leave it to age
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        pass
    return True


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Block Ctrl-C and SIGTERM in this thread for the block; one that arrived is delivered when it ends. Blocked, not
    re-handled (signals_held): the `sim mount` server runs libfuse's own C handlers, which unmount cleanly, and
    swapping Python handlers in and out replaced them with SIG_DFL after its first write."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def remove_dead_writers_files(root: Path) -> None:
    """Delete the temporary files of put()s whose process is gone (killed between mkstemp and os.replace):
    they are no sysfs node, and `edgeexit restore` must leave the tree as it was. A live writer's stays."""
    now = time.time()
    for folder, _, names in os.walk(str(root)):
        for name in names:
            if not name.startswith(TMP_PREFIX):
                continue
            path = os.path.join(folder, name)
            try:
                if not _writer_alive(name, now - os.lstat(path).st_mtime):
                    os.unlink(path)
            except OSError:
                pass  # another user's tree, or already gone


def profile_digest(profile: FirmwareProfile) -> str:
    """A digest of what `sim init` renders from the firmware profile into the tree (operating points, governors,
    nvpmodel modes; not the power model, which the physics reads live). A tree rendered from another profile
    answers with tables and a state the profile in force no longer has."""
    cpu, gpu = profile.cpu, profile.gpu
    # Named fields only, of the default mode only (what tree.py renders): a renamed mode, a budget or a field
    # a later release adds must not refuse a working tree.
    mode = next((m for m in profile.nvpmodel_modes if m.id == profile.nvpmodel_default), None)
    rendered = {
        "cpu": [cpu.scaling_driver, cpu.available_governors, cpu.default_governor, cpu.transition_latency_ns,
                {p: t.freqs for p, t in cpu.tables.items()}, cpu.vcgencmd_arm_clock_id],
        "gpu": None if gpu is None else [gpu.available_governors, gpu.default_governor, gpu.polling_interval_ms,
                                         gpu.table.freqs],
        "emc": profile.emc_freq_hz[-1] if profile.emc_freq_hz else None,
        "nvpmodel": None if mode is None else [mode.online_cpus, mode.cpu_max_khz, mode.cpu_min_khz, mode.gpu_max_hz],
    }
    return hashlib.sha256(json.dumps(rendered, sort_keys=True).encode()).hexdigest()[:16]


def check_profile_digest(root: Path, marker: Dict[str, Any], profile: FirmwareProfile) -> None:
    """Refuse a tree rendered from another firmware profile than ``profile``: its first governor or clock write
    would fail as "Invalid argument", which names nothing the user changed."""
    digest = marker.get("profile_digest")  # absent: a tree made before the digest was kept
    if digest is not None and digest != profile_digest(profile):
        raise DvfsError("{} was made from another firmware profile than {} (its operating points, governors or "
                        "nvpmodel modes differ); make a new tree with `edgeexit sim init --board {} DIR`, or use the "
                        "profile it was made from".format(root, profile.source, profile.board))


def read_marker(root: Path) -> Optional[Dict[str, Any]]:
    """The simulator's marker under ``root``, or None when ``root`` is not a simulated tree. A tree with the
    simulator's folder whose marker cannot be read is refused: taken for a real board, it ran unlabelled and
    kept edgeexit's writes."""
    if not os.path.lexists(str(Path(root) / SIM_DIR)):
        return None
    why = ""
    try:
        data = json.loads(read_file(Path(root) / MARKER).decode("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("board"), str):
            why = "names no board"
    except OSError as err:
        why = "cannot be read ({})".format(err.strerror or err)
    except (ValueError, RecursionError):
        why = "is not JSON"
    if why:
        raise DvfsError("{} is a damaged simulated tree: its {} {}; make a new one with `edgeexit sim init --board NAME "
                        "DIR`".format(root, MARKER, why))
    return data


def _give(fd: int, owner: Tuple[int, int]) -> None:
    """fchown to ``owner`` when it is not who we are; a non-root writer cannot, and keeps its own."""
    if (os.geteuid(), os.getegid()) == owner:
        return
    try:
        os.fchown(fd, owner[0], owner[1])
    except PermissionError:
        pass


def _cpu_list(cpus: List[int]) -> str:
    """Kernel cpulist format: "0-3", "0,3-5"."""
    out = []  # type: List[str]
    start = prev = None  # type: Optional[int]
    for c in sorted(cpus) + [None]:  # type: ignore[operator]
        if c is not None and prev is not None and c == prev + 1:
            prev = c
            continue
        if start is not None:
            out.append(str(start) if start == prev else "{}-{}".format(start, prev))
        start = prev = c
    return ",".join(out)


def _set_freq_shown(ds: Dict[str, Any]) -> str:
    """What devfreq's userspace/set_freq shows for the devfreq state ``ds``."""
    return ("undefined" if ds["set_freq"] is None else str(ds["set_freq"])) + "\n"


def _trans_stat(table: List[int], cur: int) -> str:
    """devfreq ``trans_stat`` in the kernel's layout [K49df], '*' on the running OPP. The simulator keeps
    no transition counts or clock, so counts and times read 0."""
    lines = ["     From  :   To", "           :" + "".join("{:>10}".format(f) for f in table) + "   time(ms)"]
    for f in table:
        lines.append("{}{:>10}:".format("*" if f == cur else " ", f) + "{:>10}".format(0) * len(table)
                     + "{:>10}".format(0))
    lines.append("Total transition : 0")
    return "\n".join(lines) + "\n"


class SimulatedKernel:
    """Applies the kernel family's sysfs rules to a simulated tree rooted at ``root``."""

    def __init__(self, root: Path, board: Optional[BoardConfig] = None,
                 profile: Optional[FirmwareProfile] = None, warn: Optional[Callable[[str], None]] = None) -> None:
        self.root = Path(root)
        marker = read_marker(self.root)
        if marker is None:
            raise DvfsError("{} is not a simulated sysfs tree (no {}); create one with "
                            "`edgeexit sim init --board NAME DIR`".format(self.root, MARKER))
        if board is None:
            board = load_board(marker["board"])
        elif board.name != marker["board"]:
            raise BoardConfigError("{} simulates board {} but board {} was asked for; pass --board {}".format(
                self.root, marker["board"], board.name, marker["board"]))
        self.board = board
        self.profile = profile or load_profile(board)
        check_profile_digest(self.root, marker, self.profile)
        family = marker.get("kernel_family", board.kernel)
        if family != board.kernel or family not in KERNEL_FAMILIES:
            # the rules must be the board's: a tree claiming another family would answer like another kernel
            raise DvfsError("{} claims kernel family {!r} in {}, but board {} follows kernel {} rules; the tree was "
                            "made for another board or edited: make a new one with `edgeexit sim init --board {} "
                            "DIR`".format(self.root, family, MARKER, board.name, board.kernel, board.name))
        self.family = str(family)
        self._lock = threading.RLock()
        self._flock_fd = None  # type: Optional[int]
        self._flock_depth = 0
        self._real_root = os.path.realpath(str(self.root))
        self.cpu_dirs = {p.relpath: p for p in board.cpu_policies}
        self.gpu_dir = board.gpu.devfreq_paths[0] if board.gpu else None
        self.read_errors = {}  # type: Dict[str, int]
        for z in board.thermal_zones:
            if z.read_errno:
                self.read_errors[z.relpath + "/temp"] = getattr(errno, z.read_errno)
        if (self.root / STATE).exists():  # absent only while `sim init` builds the tree
            self.recover()
            remove_dead_writers_files(self.root)
            for line in self.adopt_plain_edits():
                (warn or warn_stderr)(line)

    # --- creation ------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, board: BoardConfig, profile: Optional[FirmwareProfile] = None) -> "SimulatedKernel":
        """Build a fresh tree for ``board`` under ``root`` (``edgeexit sim init``). A build that fails (a full
        disk) removes what it made: a half tree was refused by the next `sim init` as not empty, and by every
        command as a damaged tree."""
        from edgeexit.paths import missing_folders, remove_folders
        from edgeexit.sim.tree import build_tree

        root = Path(root)
        made = missing_folders(root)
        was_empty = not made and root.is_dir() and not any(root.iterdir())  # else build_tree refuses it, untouched
        try:
            return build_tree(root, board, profile or load_profile(board))
        except BaseException:
            from edgeexit.signals import signals_held

            with signals_held():  # a second Ctrl-C or SIGTERM must not stop the cleanup halfway
                if made:
                    shutil.rmtree(str(root), ignore_errors=True)
                    remove_folders(made[1:])  # made[0] is root, gone with its tree
                elif was_empty:
                    for entry in root.iterdir():  # empty again
                        if entry.is_dir() and not entry.is_symlink():
                            shutil.rmtree(str(entry), ignore_errors=True)
                        else:
                            entry.unlink()
            raise

    # --- file helpers --------------------------------------------------------------------------
    def put(self, rel: str, content: str, mode: int = RO) -> None:
        """Replace a file atomically (works for non-root on 0444 files; never half-written).

        ``mode`` applies to a new file only. An existing file keeps its mode and owner, as a sysfs node
        does when its value changes: a node someone made read-only (chmod 444) must stay so and refuse
        the next write with EACCES, and a tree made for a non-root user must stay that user's after root
        wrote to it. A new file or directory takes the owner of the directory it is made in.
        """
        path = self.root / rel
        try:
            st = path.stat()  # type: Optional[os.stat_result]
        except OSError:
            st = None
        if st is not None:
            try:
                if path.read_bytes() == content.encode():
                    return
            except OSError:
                pass
        self._mkdirs(path.parent)
        if st is not None:
            mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
        else:
            pst = path.parent.stat()
            owner = (pst.st_uid, pst.st_gid)
        # Ctrl-C or SIGTERM is held until the temporary file is in place or gone: one arriving between mkstemp
        # and the try below left an empty temporary file in the tree (a review's SIGTERM did).
        with _signals_blocked():
            fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix="{}{}-".format(TMP_PREFIX, writer_tag()))
            try:
                try:
                    os.write(fd, content.encode())
                    _give(fd, owner)
                    os.fchmod(fd, mode)
                finally:
                    os.close(fd)
                os.replace(tmp, str(path))  # inside the try: a refused replace (immutable file) must not leak tmp
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise

    def _mkdirs(self, d: Path) -> None:
        """``mkdir -p`` whose new directories take their parent's owner (see :meth:`put`)."""
        if d.is_dir():
            return
        self._mkdirs(d.parent)
        try:
            d.mkdir()
        except FileExistsError:
            return
        pst = d.parent.stat()
        fd = os.open(str(d), os.O_RDONLY)
        try:
            _give(fd, (pst.st_uid, pst.st_gid))
        finally:
            os.close(fd)

    def load_state(self) -> Dict[str, Any]:
        """The kernel's state, checked to have the shape the simulator writes (a hand-edited or truncated
        file must fail with one line naming the fix, not a KeyError deep in a write)."""
        try:
            state = json.loads(read_file(self.root / STATE).decode("utf-8"))
        except (OSError, ValueError, RecursionError) as err:
            raise corrupt(self.root, "state " + STATE, "not readable JSON: {}".format(
                getattr(err, "strerror", None) or err)) from None
        problem = _state_problem(state, self.board, self.gpu_dir is not None and self.profile.gpu is not None)
        if problem:
            raise corrupt(self.root, "state " + STATE, problem)
        return state  # type: ignore[no-any-return]

    def save_state(self, state: Dict[str, Any]) -> None:
        self.put(STATE, json.dumps(state, indent=1, sort_keys=True) + "\n", 0o600)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """This thread alone, and this process alone on the tree (a FUSE server and an in-process writer
        may share one): a flock on the simulator's directory, reentrant within the thread."""
        with self._lock:
            if self._flock_depth == 0:
                try:
                    fd = os.open(str(self.root / SIM_DIR), os.O_RDONLY | os.O_DIRECTORY)
                except OSError:
                    fd = None  # cannot be opened: whatever this process then does fails on its own
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                self._flock_fd = fd
            self._flock_depth += 1
            try:
                yield
            finally:
                self._flock_depth -= 1
                if self._flock_depth == 0 and self._flock_fd is not None:
                    os.close(self._flock_fd)  # closing drops the flock
                    self._flock_fd = None

    def _state_readable(self) -> bool:
        try:
            with open(str(self.root / STATE), "rb"):
                return True
        except OSError:
            return False

    def recover(self) -> None:
        """Finish showing a store() whose process was killed half way (see RENDER_PENDING). Also checks the
        state's shape, so a corrupt tree is refused when a kernel is made for it (`sim mount`, a run)."""
        if not self._state_readable():
            return  # another user's tree (state.json is 0600): its owner's kernel finishes it
        with self.locked():
            state = self.load_state()
            if not state.get(RENDER_PENDING):
                return
            try:
                self._commit(state)
            except OSError:
                pass  # a reader who may not write the tree: the next writer finishes it

    def adopt_plain_edits(self) -> List[str]:
        """Replay edits made to the clock nodes without the kernel (a plain ``echo >`` into a tree that is not
        mounted) as the board's kernel would have taken them, and return one line per edit.

        Unreplayed, the kernel's state and the visible files disagreed: `status` showed the edit while the
        next write (a run's, `restore`'s) started from the state, as if it had not been made. Each changed
        writable node is applied to the state through the rules (governors and CPUs first, then limits, then
        requests; a write refused for its order, such as a min above the old max, is tried once more after
        the rest), and the result is shown in one commit: a kill before it leaves the edits in the files for
        the next kernel, a kill during it is finished by :meth:`recover`. A read-only node, or an edit the
        rules refuse, shows the kernel's value again. A tree whose clock nodes are not all regular files (a
        FIFO, a device, a symlink) is left as it is, for the commands to report."""
        if not self._state_readable():
            return []  # another user's tree: its owner's kernel replays them
        with self.locked():
            state = self.load_state()
            static = dict(self.static_nodes())
            nodes = list(self._clock_nodes(state)) + [(rel, content, RO) for rel, content in static.items()]
            ds = state.get("devfreq")
            if self.gpu_dir is not None and ds and ds["governor"] == "userspace":
                nodes.append((self.gpu_dir + "/userspace/set_freq", _set_freq_shown(ds), RW))
            edits = []  # type: List[Tuple[str, str, str, int]]
            for rel, content, mode in nodes:
                try:
                    if not stat.S_ISREG(os.lstat(str(self.root / rel)).st_mode):
                        return []  # a damaged tree: a render would block on a FIFO or replace a link
                except OSError:
                    continue  # deleted: a kernel does not bring it back
                shown = self._shown(rel)
                if shown is not None and shown != content:
                    edits.append((rel, shown, content, mode))
            if not edits:
                return []
            new = copy.deepcopy(state)
            refused = {}  # type: Dict[str, OSError]
            todo = [e for e in edits if e[3] == RW]
            for _ in range(2):
                refused = {}
                for rel, shown, _content, _mode in todo:
                    trial = copy.deepcopy(new)
                    try:
                        self.check_writable(rel)
                        self._store(trial, rel, shown)
                    except OSError as err:
                        refused[rel] = err
                        continue
                    new = trial
                todo = [e for e in todo if e[0] in refused]
                if not todo:
                    break
            try:
                self._commit(new, old=state)
                for rel, _shown, content, _mode in edits:
                    if rel in static:  # no render writes these: the board's tables, fixed at boot
                        self.put(rel, content)
            except OSError:
                return []  # a reader who may not write the tree, or one a render cannot replace
            lines = []
            for rel, shown, content, mode in edits:
                now = self._shown(rel) or content
                if mode != RW:
                    how = "the node is read-only, so it shows {!r} again".format(now.strip())
                elif rel in refused:
                    err = refused[rel]
                    how = "the kernel refused it ({}), so it shows {!r} again".format(
                        err.strerror or os.strerror(err.errno or 0), now.strip())
                else:
                    how = "replayed through the kernel's rules, it shows {!r}".format(now.strip())
                lines.append("simulated tree {}: {} was edited to {!r} without the simulated kernel (a plain write "
                             "into a tree that is not mounted; write through `edgeexit sim mount` instead); {}".format(
                                 self.root, rel, shown.strip(), how))
            return lines

    def _shown(self, rel: str) -> Optional[str]:
        """What the regular file ``rel`` holds, or None (missing, unreadable, or not a regular file: a FIFO
        would block the read)."""
        path = str(self.root / rel)
        try:
            if not stat.S_ISREG(os.lstat(path).st_mode):
                return None
            with open(path, "rb") as fh:
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return None

    def _commit(self, state: Dict[str, Any], old: Optional[Dict[str, Any]] = None) -> None:
        """Show ``state`` in the visible files and state.json, as one step against a kill: state.json first,
        marked pending (a kill from here on is finished by :meth:`recover`), then the files, then the mark
        dropped. A render that fails (a node made immutable, a file replaced by a directory) puts ``old``
        back the same way, so a refused write changes nothing, and raises."""
        state.pop(RENDER_PENDING, None)
        self.save_state(dict(state, **{RENDER_PENDING: True}))
        try:
            self.render(state)
        except BaseException:
            if old is not None:
                old.pop(RENDER_PENDING, None)
                try:
                    self.save_state(dict(old, **{RENDER_PENDING: True}))
                    try:
                        # the forward render stopped at the file it could not replace (that file unchanged);
                        # this one puts the files before it back, then stops at the same file
                        self.render(old)
                    except OSError:
                        pass
                    self.save_state(old)
                except OSError:
                    pass  # state.json itself cannot be written: still pending, the next kernel tries again
            raise
        self.save_state(state)

    def resolve(self, relpath: str) -> str:
        """``relpath`` with symlinks resolved, relative to the root; ENOENT if it does not exist."""
        real = os.path.realpath(str(self.root / relpath))
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise OSError(errno.EACCES, "Permission denied", relpath)
        if not os.path.lexists(real):
            # open() without O_CREAT, as a store() is reached: ENOENT. Only creating a file is EACCES
            # (sysfs has no create op), which the FUSE backend's create() answers itself.
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), relpath)
        return os.path.relpath(real, self._real_root).replace(os.sep, "/")

    def check_writable(self, relpath: str) -> str:
        """What kernfs does on open(O_WRONLY): EACCES for attributes without a store()."""
        rel = self.resolve(relpath)
        path = self.root / rel
        if path.is_dir():
            raise OSError(errno.EISDIR, "Is a directory", relpath)
        # kernfs refuses an open for write of a node with no write bit (S_IWUGO), root included
        if rel.startswith(SIM_DIR) or not (path.stat().st_mode & 0o222):
            raise OSError(errno.EACCES, "Permission denied", relpath)
        return rel

    def read_error(self, relpath: str) -> Optional[int]:
        """The errno a read of this file fails with on the real board (e.g. Orin cv*-thermal), or an
        injected one-shot read fault, else None."""
        try:
            rel = self.resolve(relpath)
        except OSError:
            return None
        try:
            self._take_fault("read", rel)
        except DvfsError:
            raise  # a corrupt fault file (see corrupt()): its own line, not an errno the reader misnames
        except OSError as err:
            return err.errno or errno.EIO
        return self.read_errors.get(rel)

    # --- fault injection (tests) ----------------------------------------------------------------
    def load_faults(self) -> Dict[str, Any]:
        try:
            data = json.loads(read_file(self.root / FAULTS).decode("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as err:
            data, problem = None, "not readable JSON: {}".format(getattr(err, "strerror", None) or err)
        else:
            problem = _faults_problem(data)
        if problem:
            raise corrupt(self.root, "injected-fault file " + FAULTS, problem,
                          "delete it (it only holds faults a test injected), or make a new tree with "
                          "`edgeexit sim init`")
        return data  # type: ignore[no-any-return]

    def _save_faults(self, faults: Dict[str, Any]) -> None:
        faults = {k: v for k, v in faults.items() if v}
        if faults:
            self.put(FAULTS, json.dumps(faults, indent=1, sort_keys=True) + "\n", 0o600)
        else:
            try:
                (self.root / FAULTS).unlink()  # no faults left: the tree is as `sim init` made it
            except FileNotFoundError:
                pass

    def inject_error(self, relpath: str, errno_name: str, op: str = "write", skip: int = 0, count: int = 1) -> None:
        """Make the next ``count`` ``op`` ("write" or "read") calls on ``relpath`` fail with ``errno_name``
        (e.g. "EBUSY", "EACCES", "EAGAIN"), after letting ``skip`` calls through. Survives processes."""
        if op not in ("write", "read"):
            raise ValueError("op must be 'write' or 'read', not {!r}".format(op))
        code = getattr(errno, errno_name, None)
        if not isinstance(code, int):
            raise ValueError("unknown errno name {!r}".format(errno_name))
        with self._lock:
            rel = self.resolve(relpath)
            faults = self.load_faults()
            faults.setdefault(op, []).append({"path": rel, "errno": errno_name, "skip": int(skip), "count": int(count)})
            self._save_faults(faults)

    def _take_fault(self, op: str, rel: str) -> None:
        """Raise the first injected fault matching (op, rel), consuming it."""
        if not (self.root / FAULTS).exists():
            return
        with self._lock:
            faults = self.load_faults()
            for f in faults.get(op, []):
                if f.get("path") != rel:
                    continue
                if f.get("skip", 0) > 0:
                    f["skip"] -= 1
                    self._save_faults(faults)
                    return
                f["count"] = f.get("count", 1) - 1
                faults[op] = [g for g in faults[op] if g.get("count", 1) > 0]
                self._save_faults(faults)
                code = getattr(errno, str(f.get("errno")), errno.EIO)
                code = code if isinstance(code, int) else errno.EIO  # a name errno has that is no errno
                raise OSError(code, os.strerror(code) + " (injected)", rel)

    def set_firmware_clock(self, policy: str, floor_khz: Optional[int] = None, cap_khz: Optional[int] = None) -> None:
        """Emulate firmware that accepts a cpufreq request but does not honour it: the clock the
        kernel reports (``scaling_cur_freq``) is raised to ``floor_khz`` (Pi 5 firmware floor, soft-
        throttling raising the clock) or held at ``cap_khz`` (thermal/firmware capping). None clears."""
        with self._lock:
            faults = self.load_faults()
            clocks = faults.setdefault("firmware_clock", {})
            if floor_khz is None and cap_khz is None:
                clocks.pop(policy, None)
            else:
                clocks[policy] = {"floor_khz": floor_khz, "cap_khz": cap_khz}
            self._save_faults(faults)
            with self.locked():
                self.render(self.load_state())

    def _firmware_cur(self, policy: str, cur: int) -> int:
        fw = self.load_faults().get("firmware_clock", {}).get(policy)
        if not fw:
            return cur
        if fw.get("floor_khz") is not None:
            cur = max(cur, int(fw["floor_khz"]))
        if fw.get("cap_khz") is not None:
            cur = min(cur, int(fw["cap_khz"]))
        return cur

    # --- the write path ------------------------------------------------------------------------
    def write(self, relpath: str, data: bytes) -> None:
        """One ``store()`` call: apply the kernel rules, or raise OSError with the kernel's errno. Atomic
        against a kill: what shows and what state.json holds never disagree (see :meth:`_commit`)."""
        with self.locked():
            rel = self.check_writable(relpath)
            self._take_fault("write", rel)
            text = data.decode("utf-8", "replace")
            d, name = posixpath.split(rel)
            state = self.load_state()
            if state.get(RENDER_PENDING):
                self._commit(state)  # a killed writer's store(): it happened, show it before this one
            old = copy.deepcopy(state)
            if self._store(state, rel, text):
                self._commit(state, old)
            elif self.gpu_dir is not None and d == self.gpu_dir and name == "polling_interval":
                # polling_interval_store: sscanf("%u") or EINVAL [K49df]; the parsed value is kept, whatever the governor
                value = rules.sscanf_uint(text, name, 32)
                self.put(rel, "{}\n".format(value))
            else:
                # a plain attribute (railgate_enable, enable_3d_scaling, power/control ...): stored as given
                self.put(rel, text.strip() + "\n")

    def _store(self, state: Dict[str, Any], rel: str, text: str) -> bool:
        """Apply a store() to a clock node (cpufreq, devfreq, CPU online) to ``state``; False for any other node.
        Raises OSError with the kernel's errno, ``state`` then possibly half changed."""
        d, name = posixpath.split(rel)
        if d in self.cpu_dirs:
            self._cpufreq_write(state, self.cpu_dirs[d].name, name, text)
        elif self.gpu_dir is not None and d == self.gpu_dir and name in ("governor", "min_freq", "max_freq"):
            self._devfreq_write(state, name, text)
        elif self.gpu_dir is not None and d == self.gpu_dir + "/userspace" and name == "set_freq":
            self._devfreq_write(state, name, text)
        elif re.match(r"^{}/cpu\d+$".format(CPU_DIR), d) and name == "online":
            self._online_write(state, int(d.rsplit("cpu", 1)[1]), text)
        else:
            return False
        return True

    def _cpufreq_write(self, state: Dict[str, Any], policy: str, name: str, text: str) -> None:
        ps = state["cpufreq"][policy]
        pol = self.cpu_dirs["{}/cpufreq/{}".format(CPU_DIR, policy)]
        if not any(state["online"][str(c)] for c in pol.cpus):
            raise rules.einval("{}: every CPU of the policy is offline".format(policy))
        table = self.profile.cpu_table(policy).freqs
        event = "limits"  # a governor or min/max write re-applies the limits; a setspeed write is a "set" [Kus]
        if name == "scaling_governor":
            gov = rules.parse_token(text)
            if gov not in self.profile.cpu.available_governors:
                raise rules.einval("unknown governor {!r}".format(gov))
            if gov != ps["governor"]:
                ps["setspeed"] = ps["cur"] if gov == "userspace" else None  # userspace starts at policy->cur
                ps["governor"] = gov
        elif name in ("scaling_min_freq", "scaling_max_freq"):
            value = rules.parse_uint(self.family, text, name)
            ps["min"], ps["max"] = rules.cpufreq_store_limit(self.family, table, name[8:11], value, ps["min"], ps["max"])
        elif name == "scaling_setspeed":
            if ps["governor"] != "userspace":
                raise rules.einval("scaling_setspeed needs the userspace governor")
            ps["setspeed"] = rules.sscanf_uint(text, name, 32)  # sscanf("%u") in every version
            event = "set"
        else:
            raise OSError(errno.EACCES, "Permission denied", name)
        # ps["min"]/["max"] are the user's requests; the kernel runs and shows their verified form. What the
        # last event picked is kept in ps["cur"], so a later render needs no record of which event it was.
        lo, hi = rules.cpufreq_effective(self.family, table, ps["min"], ps["max"])
        ps["cur"] = rules.cpufreq_cur(ps["governor"], table, lo, hi, ps["setspeed"], event)

    def _devfreq_write(self, state: Dict[str, Any], name: str, text: str) -> None:
        assert self.profile.gpu is not None
        ds = state["devfreq"]
        table = self.profile.gpu.table.freqs
        if name == "governor":
            gov = rules.parse_token(text)
            if gov not in self.profile.gpu.available_governors:
                code = rules.devfreq_unknown_governor_errno(self.family)
                raise OSError(code, os.strerror(code) + " (unknown governor {!r})".format(gov))
            if gov != ds["governor"]:
                ds["set_freq"] = None  # the userspace group is created/removed on governor start/stop
                ds["governor"] = gov
        elif name in ("min_freq", "max_freq"):
            value = rules.sscanf_uint(text, name)  # sscanf("%lu") in every version
            ds["min"], ds["max"] = rules.devfreq_store_limit(self.family, table, name[:3], value, ds["min"], ds["max"])
        else:  # userspace/set_freq: sscanf result unchecked [Kdfus]; junk is stored as 0 here
            try:
                ds["set_freq"] = rules.sscanf_uint(text, name)
            except OSError:
                ds["set_freq"] = 0
        lo, hi = rules.devfreq_effective(self.family, table, ds["min"], ds["max"])
        ds["cur"] = rules.devfreq_cur(self.family, ds["governor"], table, lo, hi, ds["set_freq"], ds["cur"])

    def _online_write(self, state: Dict[str, Any], cpu: int, text: str) -> None:
        online = rules.parse_bool(text)
        if not online and sum(1 for v in state["online"].values() if v) == 1 and state["online"][str(cpu)]:
            raise OSError(errno.EBUSY, "Device or resource busy (last online CPU)")
        state["online"][str(cpu)] = 1 if online else 0

    # --- rendering state into the visible files --------------------------------------------------
    def render(self, state: Dict[str, Any], create: bool = False) -> None:
        """Show ``state`` in the sysfs files. Only :func:`~edgeexit.sim.tree.build_tree` ``create``s them: a
        node someone deleted stays deleted, as a kernel does not bring back a file that is gone (a
        missing node must fail the write aimed at it, not reappear)."""
        put = self.put if create else self._update
        for rel, content, mode in self._clock_nodes(state):
            put(rel, content, mode)
        if self.gpu_dir is not None and state.get("devfreq"):
            ds = state["devfreq"]
            d = self.gpu_dir
            udir = self.root / d / "userspace"
            if ds["governor"] == "userspace" and (create or (self.root / d).is_dir()):
                self.put(d + "/userspace/set_freq", _set_freq_shown(ds), RW)  # the group appears with the governor
            elif udir.exists():
                shutil.rmtree(str(udir))
        if self.board.power.sensor == "pi5-pmic":
            self._render_pmic(state)
        if self.board.vendor == "raspberrypi":
            self._render_measure_clock(state)

    def static_nodes(self) -> Iterator[Tuple[str, str]]:
        """(path, content) of the read-only clock nodes no state changes: each policy's tables and limits, the
        GPU's lists. A plain edit of one (a frequency table of "1 2") was kept, and runs took it for the
        board's: `--cpu-khz max` asked for 2 kHz (a review)."""
        for pol in self.board.cpu_policies:
            table = self.profile.cpu_table(pol.name).freqs
            d = pol.relpath
            yield d + "/related_cpus", " ".join(str(c) for c in pol.cpus) + "\n"
            yield d + "/cpuinfo_min_freq", "{}\n".format(table[0])
            yield d + "/cpuinfo_max_freq", "{}\n".format(table[-1])
            yield d + "/cpuinfo_transition_latency", "{}\n".format(self.profile.cpu.transition_latency_ns)
            # "%u " per entry, then "\n": note the trailing space [Kft]
            yield d + "/scaling_available_frequencies", "".join("{} ".format(f) for f in table) + "\n"
            yield d + "/scaling_available_governors", "".join(
                "{} ".format(g) for g in self.profile.cpu.available_governors) + "\n"
            yield d + "/scaling_driver", self.profile.cpu.scaling_driver + "\n"
        if self.gpu_dir is not None and self.profile.gpu is not None:
            gpu, d = self.profile.gpu, self.gpu_dir
            # devfreq lists trim the trailing space [K49df]
            yield d + "/available_frequencies", " ".join(str(f) for f in gpu.table.freqs) + "\n"
            yield d + "/available_governors", " ".join(gpu.available_governors) + "\n"
            if self.board.kernel != "4.9" and self.board.gpu is not None:  # 5.10 adds name and timer [K510df]
                yield d + "/name", self.board.gpu.devfreq_name + "\n"
                yield d + "/timer", "deferrable\n"  # assumption: the devfreq default timer; read-only here

    def _clock_nodes(self, state: Dict[str, Any]) -> Iterator[Tuple[str, str, int]]:
        """(path, content, mode) of every CPU and GPU clock node ``state`` shows, bar the userspace group."""
        online = [int(c) for c, v in state["online"].items() if v]
        yield CPU_DIR + "/online", _cpu_list(online) + "\n", RO
        for c in range(self.board.possible_cpus):
            yield "{}/cpu{}/online".format(CPU_DIR, c), "{}\n".format(state["online"][str(c)]), RO if c == 0 else RW
        for pol in self.board.cpu_policies:
            ps = state["cpufreq"][pol.name]
            table = self.profile.cpu_table(pol.name).freqs
            lo, hi = rules.cpufreq_effective(self.family, table, ps["min"], ps["max"])
            d = pol.relpath
            yield d + "/scaling_governor", ps["governor"] + "\n", RW
            yield d + "/scaling_min_freq", "{}\n".format(lo), RW
            yield d + "/scaling_max_freq", "{}\n".format(hi), RW
            cur = self._firmware_cur(pol.name, ps["cur"])
            yield d + "/scaling_cur_freq", "{}\n".format(cur), RO
            yield d + "/cpuinfo_cur_freq", "{}\n".format(cur), ROOT_ONLY
            # only userspace has show_setspeed; it prints policy->cur [K49][Kset]
            setspeed = "{}\n".format(ps["cur"]) if ps["governor"] == "userspace" else "<unsupported>\n"
            yield d + "/scaling_setspeed", setspeed, RW
            yield d + "/affected_cpus", " ".join(str(c) for c in pol.cpus if c in online) + "\n", RO
        if self.gpu_dir is not None and state.get("devfreq"):
            assert self.profile.gpu is not None
            ds = state["devfreq"]
            lo, hi = rules.devfreq_effective(self.family, self.profile.gpu.table.freqs, ds["min"], ds["max"])
            d = self.gpu_dir
            yield d + "/governor", ds["governor"] + "\n", RW
            yield d + "/min_freq", "{}\n".format(lo), RW
            yield d + "/max_freq", "{}\n".format(hi), RW
            yield d + "/cur_freq", "{}\n".format(ds["cur"]), RO
            yield d + "/target_freq", "{}\n".format(ds["cur"]), RO
            yield d + "/trans_stat", _trans_stat(self.profile.gpu.table.freqs, ds["cur"]), RO

    def _update(self, rel: str, content: str, mode: int = RO) -> None:
        """:meth:`put` for a node that exists (or is a dangling path under a deleted one: then nothing)."""
        if os.path.lexists(str(self.root / rel)):
            self.put(rel, content, mode)

    # --- hooks for the board physics --------------------------------------------------------------
    def set_rail(self, label: str, voltage_mv: float, current_ma: float, create: bool = False) -> None:
        """Publish one rail reading in the board's real sensor layout (IIO, hwmon or Pi 5 PMIC). Only
        ``create`` (building the tree) makes a missing INA3221 file: a node someone deleted stays deleted,
        so a run does not bring back the sensor whose absence is under test."""
        power = self.board.power
        put = self.put if create else self._update
        with self._lock:
            for chip in power.ina3221:
                if label not in chip.channels:
                    continue
                ch = chip.channels.index(label)
                mv, ma = int(round(voltage_mv)), int(round(current_ma))
                if chip.driver == "ina3221x":
                    put("{}/in_voltage{}_input".format(chip.relpath, ch), "{}\n".format(mv))
                    put("{}/in_current{}_input".format(chip.relpath, ch), "{}\n".format(ma))
                    put("{}/in_power{}_input".format(chip.relpath, ch), "{}\n".format(int(voltage_mv * current_ma / 1000)))
                    put("{}/ui_input_{}".format(chip.relpath, ch), "{} {}\n".format(mv, ma))
                else:
                    put("{}/in{}_input".format(chip.relpath, ch + 1), "{}\n".format(mv))
                    put("{}/curr{}_input".format(chip.relpath, ch + 1), "{}\n".format(ma))
                    put("{}/in{}_input".format(chip.relpath, ch + 4), "{}\n".format(ma * SHUNT_MOHM))  # shunt uV
                    total = 0
                    for n in (4, 5, 6):
                        try:
                            total += int((self.root / chip.relpath / "in{}_input".format(n)).read_text())
                        except (OSError, ValueError):
                            pass
                    put("{}/in7_input".format(chip.relpath), "{}\n".format(total))
                return
            if power.sensor == "pi5-pmic" and label in power.pmic_rails + ["EXT5V"]:
                with self.locked():  # state.json is shared with store(): never save over a write under way
                    state = self.load_state()
                    state.setdefault("pmic", {})[label] = [voltage_mv, current_ma]
                    self.save_state(state)
                    self._render_pmic(state)
                return
        raise KeyError("board {} has no rail {!r} (rails: {})".format(self.board.name, label, ", ".join(power.rails())))

    def _render_pmic(self, state: Dict[str, Any]) -> None:
        # `vcgencmd pmic_read_adc` format [PMIC]: currents then voltages, indices unpaired; EXT5V voltage-only
        pmic = state.get("pmic", {})
        rails = self.board.power.pmic_rails
        lines = []
        for i, name in enumerate(rails):
            lines.append("{:>12}_A current({})={:.8f}A".format(name, i, pmic.get(name, [0.0, 0.0])[1] / 1000.0))
        for i, name in enumerate(rails):
            lines.append("{:>12}_V volt({})={:.8f}V".format(name, i + len(rails), pmic.get(name, [0.0, 0.0])[0] / 1000.0))
        lines.append("{:>12}_V volt({})={:.8f}V".format("EXT5V", 2 * len(rails), pmic.get("EXT5V", [5100.0, 0.0])[0] / 1000.0))
        self.put(PMIC_ADC, "\n".join(lines) + "\n")

    def _render_measure_clock(self, state: Dict[str, Any]) -> None:
        # The firmware runs no slower than its floor (Pi 5: 1.5 GHz) whatever cpufreq reports [RPi#5876];
        # `vcgencmd measure_clock arm` tells the truth, in Hz, as `frequency(<clock id>)=N`; the id is the
        # firmware's (profile's vcgencmd_arm_clock_id; 0 as in the reference's one sample [VCG])
        pol = self.board.cpu_policies[0]
        floor_khz = int(self.profile.power_model.extra.get("real_min_cpu_khz", 0))
        khz = max(self._firmware_cur(pol.name, state["cpufreq"][pol.name]["cur"]), floor_khz)
        clock_id = self.profile.cpu.vcgencmd_arm_clock_id
        self.put(MEASURE_CLOCK_ARM, "frequency({})={}\n".format(0 if clock_id is None else clock_id, khz * 1000))

    def set_temp_mc(self, zone_type: str, temp_mc: int) -> None:
        """Publish a thermal zone's temperature (m°C) by its ``type``."""
        for z in self.board.thermal_zones:
            if z.type == zone_type:
                self.put(z.relpath + "/temp", "{}\n".format(int(temp_mc)))
                return
        raise KeyError("board {} has no thermal zone {!r}".format(self.board.name, zone_type))
