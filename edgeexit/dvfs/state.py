"""The saved-state file and the per-board lock under ``edgeexit.paths.runtime_dir()``."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from edgeexit.errors import BoardBusyError, StateFileError
from edgeexit.paths import prepare_runtime_dir, runtime_dir

STATE_FORMAT = 1
MAX_STATE_BYTES = 1 << 20  # a state file names a few domains: far below this


def _key(board: str, root: Path) -> str:
    # Keyed by board and root: a real board has one root ("/"); a simulated tree by its path. A FUSE mount of
    # a simulated tree names the tree it serves (`sim mount` writes it there), so both views share one lock
    # and one state file, while a copy of a tree is a board of its own.
    real = os.path.realpath(str(root))
    if real != "/":
        from edgeexit.sim.fusefs import is_fuse_mount
        from edgeexit.sim.kernel import SERVED_FROM

        if is_fuse_mount(Path(real)):
            try:
                served = (Path(real) / SERVED_FROM).read_text().strip()
            except OSError:
                served = ""
            if served.startswith("/"):
                real = served
    digest = hashlib.sha1(real.encode()).hexdigest()[:12]
    return "{}-{}".format(board, digest)


def state_path(board: str, root: Path) -> Path:
    return runtime_dir() / "{}.state.json".format(_key(board, root))


def _other_runtime_dirs() -> List[Tuple[Path, int]]:
    """Other users' runtime dirs (runtime_dir() depends on the user: /run/edgeexit for root,
    /tmp/edgeexit-<uid> otherwise; /run/user/<uid>/edgeexit is where older versions kept a user's) that
    can be trusted: owned by the uid their path names, writable by that user alone, not a symlink. That
    only proves who wrote a file there (anyone can create /tmp/edgeexit-<their own uid>): what a file
    asks for is trusted only as far as that user could have done it (see node_writable)."""
    own = runtime_dir().resolve()
    dirs = [(Path("/run/edgeexit"), 0)]
    for d in sorted(Path("/run/user").glob("*/edgeexit")) + sorted(Path("/tmp").glob("edgeexit-*")):
        uid = d.parent.name if d.parent.name != "tmp" else d.name[len("edgeexit-"):]
        if uid.isdigit():
            dirs.append((d, int(uid)))
    out = []
    for d, uid in dirs:
        try:
            st = os.lstat(str(d))
            if d.resolve() != own and stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o022:
                out.append((d, uid))
        except OSError:
            continue
    return out


class ForeignState(NamedTuple):
    """A state file another user's killed run left: ``data`` as read once, or None with ``problem`` saying why
    it cannot be used."""

    path: Path
    uid: int
    gid: int
    data: Optional[Dict[str, Any]]
    problem: str


def foreign_states(board: str, root: Path) -> List[ForeignState]:
    """The state files other users' killed runs left for this board and root, so that `sudo edgeexit
    restore` undoes a run made through the udev rule and SIGKILLed. Only a regular file owned by the uid
    its directory names, and whose run is over (its lock is free: a live run's state is not ours to restore
    under it). Each is read here, once, through a descriptor that follows no symlink (its owner controls
    the directory): the caller checks and restores what was read, not what the path names later. Whether
    its owner could have written the nodes it names is the caller's to check (node_writable)."""
    key = _key(board, root)
    out = []
    for d, uid in _other_runtime_dirs():
        f = d / "{}.state.json".format(key)
        try:
            fst = os.lstat(str(f))
        except OSError:  # no such file, or another user's directory we may not read
            continue
        if stat.S_ISREG(fst.st_mode) and fst.st_uid == uid and not _lock_held(d / "{}.lock".format(key)):
            data, problem = _read_foreign(f, uid, board)
            out.append(ForeignState(f, uid, fst.st_gid, data, problem))
    return out


def foreign_state_files(board: str, root: Path) -> List[Path]:
    """The paths of :func:`foreign_states`."""
    return [f.path for f in foreign_states(board, root)]


def _read_foreign(path: Path, uid: int, board: str) -> Tuple[Optional[Dict[str, Any]], str]:
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        return None, "it cannot be read ({})".format(err.strerror or err)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            return None, "it was replaced while being read"
        raw = b""
        while len(raw) <= MAX_STATE_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            raw += chunk
    except OSError as err:
        return None, "it cannot be read ({})".format(err.strerror or err)
    finally:
        os.close(fd)
    if len(raw) > MAX_STATE_BYTES:
        return None, "it is larger than any state file"
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as err:
        return None, "it is not JSON ({})".format(err)
    if not isinstance(data, dict) or data.get("board") != board or not isinstance(data.get("domains"), list):
        return None, "it is not a saved state of board {}".format(board)
    return data, ""


def user_groups(uid: int) -> Set[int]:
    """The groups a process of ``uid`` may hold: its passwd entry's primary group and its supplementary
    groups (/etc/group, through getgrouplist). A uid without a passwd entry has none that can be known."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return set()
    groups = {pw.pw_gid}
    try:
        groups.update(os.getgrouplist(pw.pw_name, pw.pw_gid))
    except OSError:
        pass
    return groups


def node_writable(uid: int, groups: Set[int], node: Path) -> bool:
    """Could a process of ``uid`` holding ``groups`` open ``node`` for writing, by its owner and mode: uid 0
    always; its owner by u+w; else a member of its group by g+w; else anyone by o+w (the classes exclude
    one another, as in the kernel). A node that cannot be stat'ed counts as not writable."""
    if uid == 0:
        return True
    try:
        st = os.stat(str(node))
    except OSError:
        return False
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def _lock_state(path: Path) -> Tuple[bool, str]:
    """(held, why unknown): (False, "") when no run holds the lock or there is no lock file; (True, "")
    when a run holds it; (True, reason) when it cannot be opened (another user's 0700 directory or 0600
    file): no one can tell then, and a lock that may be held must count as held."""
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return False, ""  # no lock file: no run holds it
        return True, err.strerror or str(err)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True, ""
    finally:
        os.close(fd)  # closing drops the lock if we took it
    return False, ""


def _lock_held(path: Path) -> bool:
    return _lock_state(path)[0]


def lock_path(board: str, root: Path) -> Path:
    return runtime_dir() / "{}.lock".format(_key(board, root))


class BoardLock:
    """An exclusive ``flock`` on the board's lock file; the holder's pid is written inside.

    ``may_pin(uid)``: whether that user could write any of the board's clock nodes. Another user's lock
    (held, or unreadable) keeps this run off the board only if so (root's always does): otherwise anyone
    could hold one in their own /tmp/edgeexit-<uid> and keep every user off every board."""

    def __init__(self, board: str, root: Path, may_pin: Optional[Callable[[int], bool]] = None) -> None:
        self.board = board
        self.path = lock_path(board, root)
        self.may_pin = may_pin
        self._fd = None  # type: Optional[int]

    def acquire(self) -> None:
        # Readable by all (a lock holds a pid, a state file clock values), writable by this user alone, whatever
        # the umask: other users' runs must see this lock to keep off the board (see _other_runtime_dirs).
        if self.path.parent == runtime_dir():
            prepare_runtime_dir()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            st = os.fstat(fd)
            if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o644:
                os.fchmod(fd, 0o644)
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                pid = os.read(fd, 64).decode().strip() or "?"
            finally:
                os.close(fd)
            raise BoardBusyError("board {} is in use by edgeexit pid {} (lock {}); wait for it to finish or stop "
                                 "that process".format(self.board, pid, self.path)) from None
        # Locks live per user too: a root run must not pin a board a udev-rule user's run holds.
        for d, uid in _other_runtime_dirs():
            if uid != 0 and self.may_pin is not None and not self.may_pin(uid):
                continue
            other = d / self.path.name
            held, unknown = _lock_state(other)
            if not held:
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            if unknown:
                raise BoardBusyError("cannot tell whether another user's edgeexit run holds board {}: its lock {} "
                                     "cannot be read ({}); make it readable by all with `sudo chmod -R a+rX {}` "
                                     "(edgeexit keeps it so from this version on), then run again".format(
                                         self.board, other, unknown, d))
            raise BoardBusyError("board {} is in use by another user's edgeexit run (lock {}, pid {}); wait for "
                                 "it to finish or stop that process".format(self.board, other, _holder(other)))
        os.ftruncate(fd, 0)
        os.write(fd, "{}\n".format(os.getpid()).encode())
        self._fd = fd

    def release(self, remove: bool = False) -> None:
        """Unlock. ``remove`` also deletes the lock file: only safe for a root nobody else can open
        (a --simulate tree that is about to be deleted), where keeping it would leak one file per run."""
        if self._fd is not None:
            if remove:
                try:
                    self.path.unlink()
                except OSError:
                    pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def write_state(path: Path, board: str, root: Path, simulated: bool, domains: List[Dict[str, Any]],
                extra: Optional[Dict[str, Any]] = None, owner: Optional[Tuple[int, int]] = None) -> None:
    """Atomically write the state file (fsync'd: it must survive a crash or SIGKILL), 0644 whatever the umask.

    ``extra`` carries what restore needs to tell edgeexit's own changes from someone else's:
    ``expected`` (per domain path, the owned fields as edgeexit last left them) and ``in_flight``
    (domain paths edgeexit was changing when the file was written).

    ``owner`` (uid, gid): whose file it is. Root keeping another user's state file after a conflict
    gives it back to that user, or it would no longer be found there (see foreign_states). The
    temporary file is made afresh (O_EXCL, following no symlink): that user controls the directory.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    data = {"format": STATE_FORMAT, "board": board, "root": os.path.realpath(str(root)), "pid": os.getpid(),
            "simulated": simulated, "saved_at": time.time(), "domains": domains}  # type: Dict[str, Any]
    data.update(extra or {})
    tmp = path.with_name(path.name + ".tmp")
    try:
        os.unlink(str(tmp))  # what a killed write left (or anything else put there)
    except FileNotFoundError:
        pass
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])
        fh = os.fdopen(fd, "w")
    except BaseException:
        os.close(fd)
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
        raise
    with fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(str(tmp), str(path))


def read_state(path: Path, board: str) -> Optional[Dict[str, Any]]:
    """The saved state, or None when there is none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise StateFileError("state file {} is unreadable ({}); check the board by hand with `edgeexit status`, "
                             "then delete the file".format(path, err)) from None
    if not isinstance(data, dict) or data.get("board") != board or not isinstance(data.get("domains"), list):
        raise StateFileError("state file {} is not a saved state of board {}; delete it if the board is "
                             "already at its defaults".format(path, board))
    return data


#: The private tree of a ``--simulate`` session: ``<tempdir>/edgeexit-sim-<board>-XXXXXXXX/root``.
PRIVATE_SIM_PREFIX = "edgeexit-sim-"


def sweep_killed_simulations(min_age_s: float = 60.0) -> int:
    """Delete the private trees (and their lock and state files) that SIGKILLed ``--simulate`` runs left
    behind; returns how many. Only a tree whose lock file exists and is held by no one is taken: a live
    run holds its lock, and one that is just starting is younger than ``min_age_s``."""
    removed = 0
    for tmp in Path(tempfile.gettempdir()).glob(PRIVATE_SIM_PREFIX + "*-*"):
        board = tmp.name[len(PRIVATE_SIM_PREFIX):].rsplit("-", 1)[0]  # mkdtemp's suffix has no '-'
        root = tmp / "root"
        lock, state = lock_path(board, root), state_path(board, root)  # both named from the tree: before it goes
        try:
            if time.time() - tmp.stat().st_mtime < min_age_s or not lock.is_file():
                continue
            fd = os.open(str(lock), os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live run holds it
        try:
            shutil.rmtree(str(tmp), ignore_errors=True)
            for stale in (state, lock):
                try:
                    stale.unlink()
                except OSError:
                    pass
            removed += 1
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    return removed
