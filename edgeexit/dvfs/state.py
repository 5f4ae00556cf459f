"""The saved-state file and the per-board lock under ``edgeexit.paths.runtime_dir()``."""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import pwd
import re
import shlex
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from edgeexit.boards.sysfs import read_file
from edgeexit.errors import BoardBusyError, StateFileError
from edgeexit.paths import prepare_runtime_dir, runtime_dir

STATE_FORMAT = 1
BOARD_LOCK_NODE = "sys/devices/system/cpu"  # every board has it; a run's second lock (see BoardLock)
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
            try:  # line 1: the tree's real path (then the mount point and the server's pid)
                served = ((Path(real) / SERVED_FROM).read_text().splitlines() or [""])[0].strip()
            except (OSError, ValueError):
                served = ""
            if served.startswith("/"):
                real = served
    digest = hashlib.sha1(real.encode()).hexdigest()[:12]
    return "{}-{}".format(board, digest)


def state_path(board: str, root: Path) -> Path:
    return runtime_dir() / "{}.state.json".format(_key(board, root))


def restore_command(board: str, root: Path, sudo: bool = False) -> str:
    """The `edgeexit restore` command line that finds the state file of ``board`` at ``root``."""
    at = "" if os.path.realpath(str(root)) == "/" else " --sysfs-root " + shlex.quote(str(root))
    return "{}edgeexit restore --board {}{}".format("sudo " if sudo else "", board, at)


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


def unfinished_runs(board: str, root: Path) -> List[Path]:
    """The saved states (this user's, then other users') that runs on this board left and no live run holds:
    what `edgeexit restore` would put back."""
    own = state_path(board, root)
    mine = [own] if own.is_file() and not _lock_held(lock_path(board, root)) else []
    return mine + foreign_state_files(board, root)  # those whose lock is free already


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
    except Exception as err:  # noqa: BLE001 - deliberately everything: see below
        # Another user wrote it, so anything json.loads can raise must only make it ignored: not just
        # ValueError, but RecursionError on "[[[[..." (and MemoryError): any user could otherwise crash
        # every root run and restore on this board with a file in their own /tmp/edgeexit-<uid>.
        return None, "it is not JSON ({})".format(short_error(err))
    if not isinstance(data, dict) or data.get("board") != board or not isinstance(data.get("domains"), list):
        return None, "it is not a saved state of board {}".format(board)
    return data, ""


def short_error(err: BaseException) -> str:
    """An exception as one short line, for a warning about another user's file (its text may be theirs)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def remove_foreign(path: Path, uid: int) -> str:
    """Delete another user's state file ``path`` (in a directory of user ``uid``); "" or why it was not.

    Never by path: that user controls the directory and can swap it for a symlink to any directory at any
    moment, and root would then delete <that directory>/<name>. The directory is opened without following
    a symlink and checked to be still that user's alone (owned by ``uid``, writable by no one else), and
    the file is unlinked in that open directory."""
    try:
        fd = os.open(str(path.parent), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as err:
        return "its directory {} cannot be opened as a directory, not through a symlink ({})".format(
            path.parent, err.strerror or err)
    try:
        st = os.fstat(fd)
        if st.st_uid != uid or st.st_mode & 0o022:
            return "its directory {} is no longer user {}'s alone".format(path.parent, uid)
        try:
            fst = os.stat(path.name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return ""  # someone else restored it meanwhile
        if not stat.S_ISREG(fst.st_mode) or fst.st_uid != uid:
            return "it was replaced by something that is not user {}'s state file".format(uid)
        try:
            os.unlink(path.name, dir_fd=fd)
        except FileNotFoundError:
            pass
        return ""
    except OSError as err:
        return err.strerror or str(err)
    finally:
        os.close(fd)


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


class Credentials(NamedTuple):
    """What a live process may write with: its real uid, its real gid and supplementary groups as the
    kernel holds them (systemd's SupplementaryGroups= and `sg` give groups /etc/group does not list), and
    whether it holds a capability that overrides file permissions."""

    uid: int
    groups: Set[int]
    privileged: bool


#: CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN: each lets a process
#: write a file its uid and groups may not (directly, or by changing its mode, owner or its own ids).
_WRITE_ANY_CAPS = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 6) | (1 << 7) | (1 << 21)


def process_credentials(pid: int) -> Optional[Credentials]:
    """``pid``'s credentials from /proc/<pid>/status (readable by all), or None when it is gone or they
    cannot be read. Judged by the *real* uid and gid: a setuid program's effective root is not its
    invoker's (otherwise anyone could take a lock and then exec `su`, which waits at its prompt, to keep
    root off every board). Capabilities count when the process is not running a setuid program (real
    and effective uid alike: e.g. systemd's AmbientCapabilities=) and is in this user namespace, or one
    that cannot be told (caps held in a namespace of its own, `unshare -r`, grant nothing here)."""
    try:
        with open("/proc/{}/status".format(pid)) as fh:
            fields = dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)
        uids = [int(v) for v in fields["Uid"].split()]
        gids = [int(v) for v in fields["Gid"].split()]
        groups = {gids[0]} | {int(v) for v in fields.get("Groups", "").split()}
        caps = int(fields.get("CapPrm", "0").strip(), 16) | int(fields.get("CapEff", "0").strip(), 16)
    except (OSError, KeyError, ValueError, IndexError):
        return None
    privileged = False
    if caps & _WRITE_ANY_CAPS and uids[0] == uids[1]:
        try:
            privileged = os.readlink("/proc/{}/ns/user".format(pid)) == os.readlink("/proc/self/ns/user")
        except OSError:
            privileged = True  # cannot be told: count them
    return Credentials(uids[0], groups, privileged)


def _flock_on(line: str, st: os.stat_result) -> Optional[Tuple[int, bool]]:
    """(pid, whether the device matches too) when the /proc/locks (or fdinfo "lock:") ``line`` is a
    granted flock on the inode of ``st``; else None. Some filesystems show another device there than
    stat does, so the inode alone is a match too."""
    parts = line.split()  # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146448 0 EOF"; waiters have "->"
    if parts and parts[0] == "lock:":
        parts = parts[1:]
    if len(parts) < 6 or parts[1] != "FLOCK":
        return None
    try:
        pid = int(parts[4])
        major, minor, ino = parts[5].split(":")
        if int(ino) != st.st_ino:
            return None
        return pid, int(major, 16) == os.major(st.st_dev) and int(minor, 16) == os.minor(st.st_dev)
    except ValueError:
        return None


def _flock_pids(st: os.stat_result) -> Optional[List[int]]:
    """The pids /proc/locks names for the flocks on the file ``st`` describes (the process that took each:
    it may be gone, its child holding it on), or None when /proc/locks cannot be read."""
    try:
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    exact, same_ino = [], []  # type: List[int], List[int]
    for line in lines:
        found = _flock_on(line, st)
        if found is not None:
            (exact if found[1] else same_ino).append(found[0])
    return exact or same_ino


def _holds(pid: int, st: os.stat_result) -> Optional[bool]:
    """Whether process ``pid`` holds a descriptor through which the file ``st`` describes is flocked (its
    /proc/<pid>/fdinfo shows the lock); None when its descriptors cannot be read (gone, or not ours to
    see). Only fdinfo is read: a stat through /proc/<pid>/fd could hang on a dead FUSE server's file."""
    try:
        fds = os.listdir("/proc/{}/fdinfo".format(pid))
    except OSError:
        return None
    for fd in fds:
        try:
            with open("/proc/{}/fdinfo/{}".format(pid, fd)) as fh:
                info = fh.read()
        except OSError:
            continue  # closed meanwhile
        if any(_flock_on(line, st) is not None for line in info.splitlines() if line.startswith("lock:")):
            return True
    return False


def lock_holders(path: Path) -> Optional[List[Credentials]]:
    """The credentials of the live processes holding the flock on ``path``: [] when none holds it, None
    when that cannot be told. The pid written in the lock is not used (the lock's owner writes what they
    like there): /proc/locks names the process that took the lock. When that one is gone (or its pid now
    names a process that does not hold it), the lock lives on in a process it was handed to (a child it
    forked): every process whose descriptors can be read is searched, and the lock counts as unknown
    when none is found holding it. An edgeexit run takes its lock itself and never hands it on, so only
    a lock made to look so is judged by that search."""
    try:
        fd = os.open(str(path), os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    pids = _flock_pids(st)
    if pids is None:
        return None
    if not pids:
        return [] if not _lock_held(path) else None  # released since, or not to be found
    out = []  # type: List[Credentials]
    search = False
    for pid in pids:
        creds = process_credentials(pid)
        if creds is None or _holds(pid, st) is False:
            search = True
        else:
            out.append(creds)
    if search:
        found = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid() and _holds(int(p), st)]
        if not found and not out:
            return None
        for pid in found:
            creds = process_credentials(pid)
            if creds is None:
                return None
            out.append(creds)
    return out


def lock_path(board: str, root: Path) -> Path:
    return runtime_dir() / "{}.lock".format(_key(board, root))


class BoardLock:
    """An exclusive ``flock`` on the board's lock file; the holder's pid is written inside.

    ``may_pin(uid, groups)``: whether a process of ``uid`` holding ``groups`` (None: those the passwd and
    group databases give that user) could write any of the board's clock nodes. Another user's lock keeps
    this run off the board only if its holder could (root's always does): otherwise anyone could hold one
    in their own /tmp/edgeexit-<uid> and keep every user off every board. A held lock is judged by its
    holder processes' own credentials (see lock_holders): a group the process holds but /etc/group does
    not list (systemd's SupplementaryGroups=, a uid with no passwd entry) counts. It is skipped only when
    every holder provably cannot write any node; when the holders cannot be told, it keeps this run off.
    A lock that cannot be opened (so not told held or free) is judged by its owner's databases."""

    def __init__(self, board: str, root: Path,
                 may_pin: Optional[Callable[[int, Optional[Set[int]]], bool]] = None) -> None:
        self.board = board
        self.path = lock_path(board, root)
        self.may_pin = may_pin
        self._fd = None  # type: Optional[int]
        # The lock above lives in this user's runtime dir, which EDGEEXIT_RUNTIME_DIR moves: two runs with two
        # dirs (or two containers, each with its own /run, sharing the host's /sys) both took the board, and
        # each restored the other's pin. A second flock, on the board's own CPU directory, is the same for all.
        self.board_node = Path(root) / BOARD_LOCK_NODE
        self._board_fd = None  # type: Optional[int]

    def acquire(self) -> None:
        # Readable by all (a lock holds a pid, a state file clock values), writable by this user alone, whatever
        # the umask: other users' runs must see this lock to keep off the board (see _other_runtime_dirs).
        if self.path.parent == runtime_dir():
            prepare_runtime_dir()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        try:
            fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise self._unwritable(err) from None
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
            if pid == str(os.getpid()):  # a second session in this process, not another run
                raise BoardBusyError("board {} is already open in this process (lock {}); close that session first: "
                                     "one session per board at a time".format(self.board, self.path)) from None
            raise BoardBusyError("board {} is in use by edgeexit pid {} (lock {}); wait for it to finish or stop "
                                 "that process".format(self.board, pid, self.path)) from None
        # Locks live per user too: a root run must not pin a board a udev-rule user's run holds.
        for d, uid in _other_runtime_dirs():
            other = d / self.path.name
            held, unknown = _lock_state(other)
            if not held:
                continue
            if uid != 0 and self.may_pin is not None and not self._holders_may_pin(uid, other, unknown):
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
        try:
            self._board_fd = self._lock_board_node()
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.write(fd, "{}\n".format(os.getpid()).encode())
        except OSError as err:  # a full disk: the lock says no pid, and the state file would not fit either
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._unlock_board_node()
            raise self._unwritable(err) from None
        self._fd = fd

    def _lock_board_node(self) -> Optional[int]:
        """An flock on the board's CPU directory, or None where it cannot be taken (no such directory, a file
        system without locks): the runtime-dir lock still stands. Held by a run that could pin the board: busy.
        Judged by its holders as another user's runtime lock is, so that no one can keep every run off a board
        by locking a directory anyone may open."""
        for _ in range(2):  # again once if the holder let go while it was looked up
            try:
                bfd = os.open(str(self.board_node), os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                return None
            try:
                fcntl.flock(bfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return bfd
            except OSError as err:
                os.close(bfd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None
            holders = lock_holders(self.board_node)
            if holders is not None and self.may_pin is not None and not any(
                    h.uid == 0 or h.privileged or self.may_pin(h.uid, h.groups) for h in holders):
                return None
            if holders is None or holders:
                break
        pids = ", ".join(str(p) for p in _holder_pids(self.board_node))
        raise BoardBusyError("board {} is in use by another edgeexit run{} that keeps its lock in another runtime "
                             "directory (EDGEEXIT_RUNTIME_DIR, or another container's /run); wait for it to finish or "
                             "stop that process".format(self.board, " (pid {})".format(pids) if pids else ""))

    def _unlock_board_node(self) -> None:
        if self._board_fd is not None:
            try:
                fcntl.flock(self._board_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._board_fd)
                self._board_fd = None

    def _unwritable(self, err: OSError) -> StateFileError:
        return StateFileError("cannot write the board lock {} ({}); {}".format(self.path, err.strerror or err,
                                                                             runtime_dir_fix(err)))

    def _holders_may_pin(self, uid: int, other: Path, unknown: str) -> bool:
        """Whether the run holding user ``uid``'s lock ``other`` (held, or ``unknown``) may pin the board."""
        assert self.may_pin is not None
        if unknown:
            return self.may_pin(uid, None)
        holders = lock_holders(other)
        if holders is None:
            return True
        return any(h.uid == 0 or h.privileged or self.may_pin(h.uid, h.groups) for h in holders)

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
        self._unlock_board_node()


def _holder_pids(path: Path) -> List[int]:
    """The pids /proc/locks names for the flocks on ``path`` ([] when that cannot be told)."""
    try:
        return _flock_pids(os.stat(str(path))) or []
    except OSError:
        return []


def runtime_dir_fix(err: OSError) -> str:
    """The fix for a state file or lock that cannot be written, by what stopped it."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free space there, or set EDGEEXIT_RUNTIME_DIR to a directory with room"
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "check its permissions, or set EDGEEXIT_RUNTIME_DIR to a writable directory"
    return "set EDGEEXIT_RUNTIME_DIR to a writable directory"


def write_state(path: Path, board: str, root: Path, simulated: bool, domains: List[Dict[str, Any]],
                extra: Optional[Dict[str, Any]] = None) -> None:
    """:func:`_write_state`, with a failure (a full disk, a read-only runtime directory) as one line naming the
    place: the OSError alone ("No space left on device") named neither the file nor the fix."""
    try:
        _write_state(path, board, root, simulated, domains, extra)
    except OSError as err:
        raise StateFileError("cannot save the board's state to {} ({}); {}".format(
            path, err.strerror or err, runtime_dir_fix(err))) from None


def _write_state(path: Path, board: str, root: Path, simulated: bool, domains: List[Dict[str, Any]],
                 extra: Optional[Dict[str, Any]] = None) -> None:
    """Atomically write the state file (fsync'd: it must survive a crash or SIGKILL), 0644 whatever the umask.

    ``extra`` carries what restore needs to tell edgeexit's own changes from someone else's:
    ``expected`` (per domain path, the owned fields as edgeexit last left them) and ``in_flight``
    (domain paths edgeexit was changing when the file was written).

    Only ever into this user's own runtime dir: another user's directory is that user's to swap for a
    symlink while we write (see BoardSession.restore_stale). The temporary file is made afresh anyway
    (O_EXCL, following no symlink).
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
        fh = os.fdopen(fd, "w")
    except BaseException:
        os.close(fd)
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
        raise
    try:
        with fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(str(tmp), str(path))
    except BaseException:
        # Ctrl-C or SIGTERM (SystemExit) mid-write: the previous state file stands; no .tmp is left behind
        try:
            os.unlink(str(tmp))
        except OSError:
            pass
        raise


#: Saved values as every domain's save() writes them: unsigned decimal integers, a plain governor name.
_UINT_TEXT = re.compile(r"[0-9]{1,20}\Z")
_GOVERNOR = re.compile(r"[A-Za-z0-9_.-]{1,32}\Z")
#: What a domain's save() writes, per kind: (fields it always writes, its userspace request, optional fields).
SAVED_FIELDS = {"cpu": (("governor", "min", "max"), "setspeed", ()),
                "gpu": (("governor", "min", "max"), "set_freq", ("cur",))}


def saved_problem(kind: str, saved: Any, where: str = "") -> str:
    """Why ``saved`` is not what a ``kind`` domain's save() writes (``""`` when it is): restoring a damaged
    entry would write 0 as a max (the CPU held at its lowest clock) or end in a KeyError half way. The one
    check of our own state files and (with the domain's path as ``where``) of other users' files."""
    at = " for {}".format(where) if where else ""
    if not isinstance(saved, dict):
        return "its saved values{} are {!r}, not a set of values".format(at, type(saved).__name__)
    always, request, optional = SAVED_FIELDS[kind]
    extra = sorted((str(k) for k in set(saved) - set(always + (request,) + optional)))
    if extra:
        return "its saved values{} name {!r}, which no run saves".format(at, extra[0][:40])
    gov = saved.get("governor")
    if not isinstance(gov, str) or not _GOVERNOR.match(gov):
        return "its saved governor{} is {}, not a governor name".format(at, _short(gov))
    for f in ("min", "max") + optional:
        v = saved.get(f)
        if not (v is None and f in optional) and not (isinstance(v, str) and _UINT_TEXT.match(v)):
            return "its saved {}{} is {}, not an unsigned decimal integer".format(f, at, _short(v))
    v = saved.get(request)
    if v is not None and not (isinstance(v, str) and (_UINT_TEXT.match(v) or (kind == "gpu" and v == "undefined"))):
        return "its saved {}{} is {}, not an unsigned decimal integer".format(request, at, _short(v))
    return ""


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def domains_problem(domains: Any, allow_empty: bool = False) -> str:
    """Why ``domains`` is not a list of saved domain entries as a run writes them (``""`` when it is)."""
    if not isinstance(domains, list) or (not domains and not allow_empty):
        # a run saves every domain it may change before its first write; none means the file was damaged
        return "it names no clock domain ('domains' is {})".format(_short(domains))
    seen = set()  # type: Set[str]
    for i, e in enumerate(domains):
        where = "domains[{}]".format(i)
        if not isinstance(e, dict) or e.get("kind") not in SAVED_FIELDS or not isinstance(e.get("name"), str):
            return "{} is not a saved clock domain".format(where)
        path = e.get("path")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path.split("/") or path in seen:
            return "{} has path {}, not a clock domain under the root".format(where, _short(path))
        seen.add(path)
        problem = saved_problem(str(e["kind"]), e.get("saved"))
        if problem:
            return "{} ({}): {}".format(where, path, problem)
    return ""


def record_problem(data: Dict[str, Any]) -> str:
    """Why ``expected``/``in_flight`` are not as write_state writes them (``""`` when they are)."""
    exp, flying = data.get("expected"), data.get("in_flight")
    if exp is not None and not (isinstance(exp, dict) and all(
            isinstance(k, str) and isinstance(v, dict) and all(
                isinstance(f, str) and (x is None or isinstance(x, str)) for f, x in v.items())
            for k, v in exp.items())):
        return "its record of what edgeexit left ('expected') is damaged"
    if flying is not None and not (isinstance(flying, list) and all(isinstance(p, str) for p in flying)):
        return "its record of the domains being changed ('in_flight') is damaged"
    return ""


def read_state(path: Path, board: str) -> Optional[Dict[str, Any]]:
    """The saved state, or None when there is none. A damaged file raises StateFileError and stays where
    it is: it is the only record of what the board ran at, so nothing is restored from it and it is never
    deleted here."""
    fix = "check the board with `edgeexit status` and set its clocks back by hand, then delete {}".format(path)
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise ValueError("larger than any state file")
        data = json.loads(read_file(path).decode("utf-8"))  # a FIFO there must not hang the restore
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError, MemoryError) as err:
        # RecursionError: "[[[[..." nested deeper than the parser goes (a damaged or hand-made file)
        raise StateFileError("state file {} is unreadable ({}); {}".format(
            path, getattr(err, "strerror", None) or short_error(err), fix)) from None
    if not isinstance(data, dict) or data.get("board") != board:
        raise StateFileError("state file {} is not a saved state of board {}; delete it if the board is "
                             "already at its defaults".format(path, board))
    problem = domains_problem(data.get("domains")) or record_problem(data)
    if problem:
        raise StateFileError("state file {} is damaged: {}; nothing was restored from it; {}".format(path, problem, fix))
    return data


#: The private tree of a ``--simulate`` session: ``<tempdir>/edgeexit-sim-<board>-XXXXXXXX/root``.
PRIVATE_SIM_PREFIX = "edgeexit-sim-"
#: A ``--simulate`` tree's claim file, flocked by the process that made the tree until it deletes it: the sweep
#: tells a tree whose maker was SIGKILLed before its session took the board lock from one still being set up.
TREE_CLAIM = "claim"
_claims = {}  # type: Dict[str, int]


def claim_tree(tmp: str) -> None:
    """Hold ``tmp``'s claim for this process (a forked child shares it: the sweep leaves the tree to both)."""
    fd = os.open(os.path.join(tmp, TREE_CLAIM), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a file just made: nobody else holds it (ENOLCK on some network file systems)
    except OSError:
        os.close(fd)
        raise
    _claims[tmp] = fd


def release_tree(tmp: str) -> None:
    """Drop ``tmp``'s claim, after deleting the tree (or instead, in a process that did not make it)."""
    fd = _claims.pop(tmp, None)
    if fd is not None:
        os.close(fd)


#: The temporary tree ``edgeexit sim mount`` serves without --backing: ``<tempdir>/edgeexit-simmount-<board>-XXXXXXXX/tree``.
MOUNT_SIM_PREFIX = "edgeexit-simmount-"


def sweep_killed_simulations(min_age_s: float = 60.0) -> int:
    """Delete the temporary trees (and their lock and state files) that SIGKILLed ``--simulate`` runs and
    ``sim mount`` servers left behind; returns how many. A tree in use holds a flock: a ``--simulate`` run
    its board lock, a server its tree's served-from file (and a run through the mount the board lock). A
    tree whose file is held is left, and so is a ``--simulate`` tree whose maker still holds its claim (a
    session not yet entered); one that is just starting is younger than ``min_age_s`` (a server claims its
    tree a second after making it)."""
    from edgeexit.sim.kernel import SERVED_FROM

    removed = 0
    for prefix, sub in ((PRIVATE_SIM_PREFIX, "root"), (MOUNT_SIM_PREFIX, "tree")):
        for tmp in Path(tempfile.gettempdir()).glob(prefix + "*-*"):
            board = tmp.name[len(prefix):].rsplit("-", 1)[0]  # mkdtemp's suffix has no '-'
            root = tmp / sub
            lock, state = lock_path(board, root), state_path(board, root)  # both named from the tree: before it goes
            in_use = tmp / TREE_CLAIM if sub == "root" else root / SERVED_FROM
            fds = []  # type: List[int]
            try:
                if time.time() - tmp.stat().st_mtime < min_age_s or not (in_use.is_file() or lock.is_file()):
                    continue  # young, or made before claims (a --simulate tree) or served-from files existed
                for held in (in_use, lock):
                    if held.is_file():
                        fds.append(os.open(str(held), os.O_RDWR))
                        fcntl.flock(fds[-1], fcntl.LOCK_EX | fcntl.LOCK_NB)  # OSError: a live run or server holds it
                shutil.rmtree(str(tmp), ignore_errors=True)
                for stale in (state, lock):
                    try:
                        stale.unlink()
                    except OSError:
                        pass
                removed += 1
            except OSError:
                continue
            finally:
                for fd in fds:
                    os.close(fd)  # closing drops the flock
    return removed
