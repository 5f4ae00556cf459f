"""The saved-state file and the per-board lock under ``edgeexit.paths.runtime_dir()``."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgeexit.errors import BoardBusyError, StateFileError
from edgeexit.paths import runtime_dir

STATE_FORMAT = 1


def _key(board: str, root: Path) -> str:
    # Keyed by board and root: a real board has one root ("/"). A simulated tree is keyed by the id in its
    # marker where it has one, so its FUSE mount (which shows the same marker) shares its lock.
    from edgeexit.sim.kernel import read_marker

    marker = read_marker(root) if os.path.realpath(str(root)) != "/" else None
    tree_id = marker.get("tree_id") if marker is not None else None
    if isinstance(tree_id, str) and re.fullmatch("[0-9a-f]{32}", tree_id):
        return "{}-sim{}".format(board, tree_id[:12])
    digest = hashlib.sha1(os.path.realpath(str(root)).encode()).hexdigest()[:12]
    return "{}-{}".format(board, digest)


def state_path(board: str, root: Path) -> Path:
    return runtime_dir() / "{}.state.json".format(_key(board, root))


def _other_runtime_dirs() -> List[Tuple[Path, int]]:
    """Other users' runtime dirs (runtime_dir() depends on the user: /run/edgeexit for root,
    /tmp/edgeexit-<uid> or /run/user/<uid>/edgeexit otherwise) that can be trusted: owned by the uid
    their path names, writable by that user alone, not a symlink (anyone can create /tmp/edgeexit-99999)."""
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


def foreign_state_files(board: str, root: Path) -> List[Path]:
    """The state files other users' killed runs left for this board and root, so that `sudo edgeexit
    restore` undoes a run made through the udev rule and SIGKILLed. Only a file its directory's user
    owns, and whose run is over (its lock is free): a live run's state is not ours to restore under it."""
    key = _key(board, root)
    out = []
    for d, uid in _other_runtime_dirs():
        f = d / "{}.state.json".format(key)
        try:
            fst = os.lstat(str(f))
        except OSError:  # no such file, or another user's directory we may not read
            continue
        if stat.S_ISREG(fst.st_mode) and fst.st_uid == uid and not _lock_held(d / "{}.lock".format(key)):
            out.append(f)
    return out


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "?"
    except OSError:
        return "?"


def _lock_held(path: Path) -> bool:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return False  # no lock file: no run holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we took it
    return False


def lock_path(board: str, root: Path) -> Path:
    return runtime_dir() / "{}.lock".format(_key(board, root))


class BoardLock:
    """An exclusive ``flock`` on the board's lock file; the holder's pid is written inside."""

    def __init__(self, board: str, root: Path) -> None:
        self.board = board
        self.path = lock_path(board, root)
        self._fd = None  # type: Optional[int]

    def acquire(self) -> None:
        # Readable by all (a lock holds a pid, a state file clock values), writable by this user alone: other
        # users' runs must see this lock to keep off the board (see _other_runtime_dirs).
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
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
        for d, _ in _other_runtime_dirs():
            other = d / self.path.name
            if _lock_held(other):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
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
                extra: Optional[Dict[str, Any]] = None) -> None:
    """Atomically write the state file (fsync'd: it must survive a crash or SIGKILL).

    ``extra`` carries what restore needs to tell edgeexit's own changes from someone else's:
    ``expected`` (per domain path, the owned fields as edgeexit last left them) and ``in_flight``
    (domain paths edgeexit was changing when the file was written).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    data = {"format": STATE_FORMAT, "board": board, "root": os.path.realpath(str(root)), "pid": os.getpid(),
            "simulated": simulated, "saved_at": time.time(), "domains": domains}  # type: Dict[str, Any]
    data.update(extra or {})
    tmp = path.with_name(path.name + ".tmp")
    with open(str(tmp), "w") as fh:
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
