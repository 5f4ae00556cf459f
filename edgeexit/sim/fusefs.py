"""`edgeexit sim mount`: the simulated kernel as a FUSE filesystem (mfusepy + libfuse3).

Reads come from the tree's files, writes go through the same :meth:`SimulatedKernel.write` the
in-process simulator uses, so ``cat``/``echo >`` and the controller's plain file I/O see the kernel's
rules and errnos. ``direct_io`` and zero cache timeouts make every read reach the simulator, as on
sysfs where a write to one file changes others (``scaling_cur_freq`` after ``scaling_setspeed``).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from edgeexit.boards.config import BoardConfig, load_board
from edgeexit.signals import TERMINATING, sigterm_to_exit, signals_held
from edgeexit.dvfs.state import MOUNT_SIM_PREFIX, sweep_killed_simulations
from edgeexit.errors import DvfsError
from edgeexit.paths import missing_folders, remove_folders
from edgeexit.sim.kernel import SERVED_FROM, TMP_PREFIX, SimulatedKernel

SYSFS_FILE_SIZE = 4096  # sysfs reports every attribute as 4096 bytes


def fuse_problem() -> Optional[str]:
    """Why FUSE cannot work here (naming what to install), or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing: load the fuse kernel module (modprobe fuse) or run the container with --device /dev/fuse"
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "fusermount3 is not installed: apt-get install fuse3"
    if sys.version_info < (3, 9):
        # mfusepy 3 needs Python 3.9; the mfusepy 1.x that pip picks on 3.8 passes direct_io to libfuse3 as a mount
        # option, which it refuses ("unknown option(s): -o direct_io"), and without it reads would be cached
        return "sim mount needs Python 3.9 or later (mfusepy 3, which passes direct_io as libfuse3 wants it); run " \
               "it from a Python 3.9+ environment with the [fuse] extra"
    try:
        import mfusepy  # noqa: F401
    except ImportError:
        return "the mfusepy package is not installed: pip install 'mfusepy>=3' (the [fuse] extra)"
    except (OSError, EnvironmentError) as err:  # libfuse itself missing
        return "libfuse is not installed ({}): apt-get install fuse3".format(err)
    version = _mfusepy_version()
    if version is not None and version < 3:
        return "mfusepy {} passes direct_io to libfuse3 as a mount option, which it refuses: pip install " \
               "'mfusepy>=3'".format(version)
    return None


def _mfusepy_version() -> Optional[int]:
    """mfusepy's major version (None where its metadata cannot be read)."""
    try:
        from importlib.metadata import version

        return int(version("mfusepy").split(".")[0])
    except Exception:  # no metadata, or an odd version string: try the mount and let libfuse say
        return None


def _make_operations(kernel: SimulatedKernel, served: Optional[List[bool]] = None) -> Any:
    """The FUSE operations over ``kernel``; ``served`` gets True once the mount is up and its loop runs."""
    import mfusepy

    class SimulatedSysfsFuse(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True

        def __init__(self) -> None:
            self.k = kernel
            self.root = str(kernel.root)

        def init(self, path: str) -> None:
            if served is not None:
                served.append(True)

        def _rel(self, path: str) -> str:
            return path.lstrip("/") or "."

        def _full(self, path: str) -> str:
            return os.path.join(self.root, path.lstrip("/"))

        def getattr(self, path: str, fh: Any = None) -> Dict[str, Any]:
            try:
                st = os.lstat(self._full(path))
            except OSError as err:
                raise mfusepy.FuseOSError(err.errno or errno.ENOENT)
            size = SYSFS_FILE_SIZE if (st.st_mode & 0o170000) == 0o100000 else st.st_size
            return {"st_mode": st.st_mode, "st_nlink": st.st_nlink, "st_uid": st.st_uid, "st_gid": st.st_gid,
                    "st_size": size, "st_atime": st.st_atime_ns, "st_mtime": st.st_mtime_ns,
                    "st_ctime": st.st_ctime_ns}

        def readlink(self, path: str) -> str:
            return os.readlink(self._full(path))

        def readdir(self, path: str, fh: Any) -> List[str]:
            names = [n for n in os.listdir(self._full(path)) if not n.startswith(TMP_PREFIX)]
            return [".", ".."] + names

        def open(self, path: str, flags: int) -> int:
            if flags & os.O_ACCMODE != os.O_RDONLY:
                try:
                    self.k.check_writable(self._rel(path))
                except OSError as err:
                    raise mfusepy.FuseOSError(err.errno or errno.EACCES)
            return 0

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            raise mfusepy.FuseOSError(errno.EACCES)  # sysfs cannot create files

        def read(self, path: str, size: int, offset: int, fh: Any) -> bytes:
            try:
                code = self.k.read_error(self._rel(path))
            except OSError as err:  # a corrupt fault file: EUCLEAN (see kernel.corrupt)
                raise mfusepy.FuseOSError(err.errno or errno.EIO)
            if code is not None:
                raise mfusepy.FuseOSError(code)
            try:
                with open(self._full(path), "rb") as f:
                    data = f.read()
            except OSError as err:
                raise mfusepy.FuseOSError(err.errno or errno.EIO)
            return data[offset:offset + size]

        def write(self, path: str, data: bytes, offset: int, fh: Any) -> int:
            try:
                self.k.write(self._rel(path), bytes(data))
            except OSError as err:
                raise mfusepy.FuseOSError(err.errno or errno.EIO)
            return len(data)

        def truncate(self, path: str, length: int, fh: Any = None) -> int:
            return 0  # sysfs ignores O_TRUNC: `echo x > attr` truncates, then writes

        def utimens(self, path: str, times: Any = None) -> int:
            return 0

        def access(self, path: str, amode: int) -> int:
            if not os.path.lexists(self._full(path)):
                raise mfusepy.FuseOSError(errno.ENOENT)
            return 0

        def _refuse(self, *args: Any) -> int:
            raise mfusepy.FuseOSError(errno.EPERM)

        mkdir = rmdir = unlink = rename = symlink = link = chmod = chown = _refuse

    return SimulatedSysfsFuse()


def mount(board_name: str, mountpoint: Path, backing: Optional[Path] = None, foreground: bool = True,
          announce: Optional[Callable[[str], None]] = None) -> None:
    """Mount the simulated kernel of ``board_name`` at ``mountpoint``.

    ``backing`` is an existing simulated tree; without one a fresh tree is made in a temporary
    directory (deleted after unmounting in the foreground). ``foreground=False`` starts the server
    as a child process and returns once the mount is live.
    """
    problem = fuse_problem()
    if problem:
        raise DvfsError("cannot mount the simulated board with FUSE: {}".format(problem))
    board = load_board(board_name)
    mountpoint = Path(mountpoint)
    try:
        os.stat(str(mountpoint))
    except OSError as err:
        if err.errno == errno.ENOTCONN:  # a mount whose server was killed
            raise DvfsError("{} is a FUSE mount whose server has stopped; unmount it with `edgeexit sim umount {}`, "
                            "then mount again".format(mountpoint, mountpoint)) from None
    if backing is not None:
        # libfuse moves the server to / once mounted: a relative backing would name nothing there
        backing = Path(os.path.abspath(str(backing)))
    # A missing mount point is made, and removed again once unmounted or refused, so a mount leaves
    # no directory behind. In the background the server makes (and removes) its own.
    made = missing_folders(Path(os.path.abspath(str(mountpoint))))  # absolute: libfuse moves the server to /
    mounted = False
    try:
        if foreground:
            mountpoint.mkdir(parents=True, exist_ok=True)
        _mount_on(board, mountpoint, backing, foreground, announce)
        mounted = True
    finally:  # also on Ctrl-C or SIGTERM (SystemExit) before the mount was up
        if foreground or not mounted:
            remove_folders(made)


def _mount_on(board: BoardConfig, mountpoint: Path, backing: Optional[Path], foreground: bool,
              announce: Optional[Callable[[str], None]]) -> None:
    if os.path.ismount(str(mountpoint)):
        raise DvfsError("{} is already a mount point; unmount it first (`edgeexit sim umount {}`)".format(
            mountpoint, mountpoint))
    if mountpoint.is_dir() and any(mountpoint.iterdir()):
        # FUSE would hide what is there (often the tree meant for --backing) until the unmount
        raise DvfsError("{} is not empty: mount on an empty directory (a tree from `edgeexit sim init` goes to "
                        "--backing)".format(mountpoint))
    say = announce or (lambda msg: None)
    if not foreground:
        # The server is a foreground mount in a child; a temporary tree is its to make and to delete
        # after unmounting, so none is left behind.
        cmd = [sys.executable, "-m", "edgeexit", "sim", "mount", "--board", board.name]
        cmd += ["--backing", str(backing)] if backing is not None else []
        if backing is not None:
            SimulatedKernel(backing, board)  # here, where its warnings (plain edits it replays) are seen
        with tempfile.TemporaryFile() as err:  # the server's own one-line refusal, should it exit early
            proc = subprocess.Popen(cmd + [str(mountpoint)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, start_new_session=True)
            try:
                wait_mounted(mountpoint, proc)
            except DvfsError:
                exited = proc.poll() is not None
                _stop_server(proc, mountpoint)  # a server still starting would mount after we gave up
                err.seek(0)
                lines = [l for l in err.read().decode("utf-8", "replace").splitlines() if l.strip()]
                if exited and lines:
                    raise DvfsError(server_refusal(lines)) from None
                raise
            except BaseException:  # Ctrl-C while waiting: the same
                _stop_server(proc, mountpoint)
                raise
        say("SIMULATED {} mounted at {} (pid {}, backing tree {}); `edgeexit sim umount {}` unmounts".format(
            board.name, mountpoint, proc.pid, backing or "temporary, deleted after unmounting", mountpoint))
        return
    tmp = None  # type: Optional[str]
    served_fd = None  # type: Optional[int]
    # Until libfuse's own handlers are in, SIGTERM unwinds (SystemExit) through the cleanup below, so a
    # server stopped while it builds its temporary tree leaves none behind (the CLI's handler does the same).
    old_handlers = {s: signal.getsignal(s) for s in TERMINATING}
    if old_handlers[signal.SIGTERM] == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, sigterm_to_exit)
    up = []  # type: List[bool]
    try:
        if backing is None:
            sweep_killed_simulations()  # a SIGKILLed server cannot delete its own tree
            with signals_held():  # its name is kept before a signal can unwind past it
                tmp = tempfile.mkdtemp(prefix="{}{}-".format(MOUNT_SIM_PREFIX, board.name))
            backing = Path(tmp) / "tree"
            SimulatedKernel.create(backing, board)
        kernel = SimulatedKernel(backing, board)
        import mfusepy

        served_fd = _claim_tree(Path(backing), mountpoint)
        say("SIMULATED {} (kernel {} rules) mounted at {} (backing tree {}); Ctrl-C or `edgeexit sim umount {}` "
            "unmounts".format(board.name, kernel.family, mountpoint, backing, mountpoint))
        # libfuse only installs its SIGTERM/SIGHUP/SIGINT handlers (which unmount cleanly) over SIG_DFL; the CLI's
        # Python handlers would wait for a libfuse loop that never returns to Python. SIGQUIT kills, as before.
        for sig, was in old_handlers.items():
            if was != signal.SIG_IGN or sig == signal.SIGTERM:  # a hang-up nohup ignores stays ignored
                signal.signal(sig, signal.SIG_DFL)
        # One thread: the kernel serialises every write under its lock anyway, and libfuse 3.12-3.14's
        # multi-threaded fuse_main prints a spurious "Ignoring invalid max threads value" (libfuse#1003).
        mfusepy.FUSE(_make_operations(kernel, up), str(mountpoint), foreground=True, nothreads=True, direct_io=True,
                     attr_timeout=0, entry_timeout=0, negative_timeout=0, fsname="edgeexit-sim-" + board.name)
    except RuntimeError as err:  # libfuse's status (mfusepy raises it as is)
        if up and not is_fuse_mount(mountpoint):
            # Ctrl-C or SIGTERM: libfuse's handlers ended the loop and unmounted, and report that as status 8
            say("SIMULATED {} unmounted from {}".format(board.name, mountpoint))
            return
        raise DvfsError("libfuse could not {} {} (status {}; its own message is above): check that fuse3 is "
                        "installed and /dev/fuse exists, or `edgeexit sim umount {}` a stale mount there".format(
                            "serve" if up else "mount", mountpoint, err, mountpoint)) from None
    finally:
        for sig, was in old_handlers.items():
            signal.signal(sig, was if was is not None else signal.SIG_DFL)
        with signals_held():  # a signal now waits for the cleanup, then is delivered
            if served_fd is not None:
                try:
                    (Path(backing) / SERVED_FROM).unlink()  # still holding its lock: a waiting mount finds a fresh file
                except OSError:
                    pass
                os.close(served_fd)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)


def server_refusal(lines: List[str]) -> str:
    """A background server's refusal as one line: its own error line, with what libfuse printed before it (a
    foreground mount shows that above its error; in the background it was lost)."""
    last = lines[-1].split("error: ", 1)[-1]
    said = [l.strip() for l in lines[:-1] if not l.startswith("edgeexit: ")]
    if said and "its own message is above" in last:
        last = last.replace("its own message is above", "libfuse said: " + " / ".join(said))
    return last


def _stop_server(proc: "subprocess.Popen[bytes]", mountpoint: Path) -> None:
    """End a background server that did not mount in time, and its mount if it made one after all:
    SIGTERM (libfuse unmounts on it once its handlers are in), SIGKILL if it lingers, then
    ``fusermount3 -u`` for a mount it left."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if is_fuse_mount(mountpoint):
        try:
            unmount(mountpoint)
        except DvfsError:
            pass  # the caller's error says what failed; `edgeexit sim umount` is its fix


def _claim_tree(backing: Path, mountpoint: Path) -> int:
    """Write ``served-from`` and hold an exclusive flock on it for as long as this server serves the tree;
    returns its descriptor. One tree has one server: with two, the first unmount deleted served-from while
    the other mount still served the tree, and runs through that mount then took a lock and state file of
    their own, not the tree's (two runs at once on one board; `restore` on the tree finding nothing). A
    server killed with SIGKILL drops its flock, so a stale served-from never blocks the next mount."""
    served = backing / SERVED_FROM
    while True:
        fd = os.open(str(served), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                lines = os.read(fd, 4096).decode("utf-8", "replace").splitlines()
            finally:
                os.close(fd)
            where = lines[1] if len(lines) > 1 and lines[1] else "another mount point"
            pid = " (pid {})".format(lines[2]) if len(lines) > 2 and lines[2].isdigit() else ""
            raise DvfsError("the simulated tree {} is already served by `edgeexit sim mount` at {}{}; use that mount, "
                            "or unmount it first (`edgeexit sim umount {}`), or serve a copy of the tree".format(
                                backing, where, pid, where)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(str(served)).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)  # the server before us unlinked it after we opened it: take the new one
    # line 1 is what dvfs.state keys the lock and state file on; the mount point and pid name the server
    os.ftruncate(fd, 0)
    os.write(fd, "{}\n{}\n{}\n".format(os.path.realpath(str(backing)), os.path.abspath(str(mountpoint)),
                                        os.getpid()).encode())
    return fd


def wait_mounted(mountpoint: Path, proc: "subprocess.Popen[bytes]", timeout_s: float = 20.0) -> None:
    """Wait until ``proc`` has mounted ``mountpoint``; fail with its exit status otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if os.path.ismount(str(mountpoint)):
            return
        if proc.poll() is not None:
            raise DvfsError("the FUSE server exited with status {} before mounting {}".format(proc.returncode, mountpoint))
        time.sleep(0.05)
    raise DvfsError("{} was not mounted within {:.0f} s".format(mountpoint, timeout_s))


def is_fuse_mount(path: Path) -> bool:
    """Whether ``path`` is a FUSE mount point (checked in /proc/self/mountinfo)."""
    real = os.path.realpath(str(path))
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) > 4 and fields[4].replace("\\040", " ") == real and right.split()[0].startswith("fuse"):
                    return True
    except OSError:
        return False
    return False


def unmount(mountpoint: Path) -> None:
    """``fusermount3 -u`` (or ``fusermount -u``); a clear error when it is not mounted. Then deletes the
    temporary trees of servers killed with SIGKILL (a minute old, served by no one)."""
    if not is_fuse_mount(mountpoint):  # read from mountinfo: a mount whose server died cannot even be stat'ed
        raise DvfsError("{} is not mounted".format(mountpoint))
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise DvfsError("cannot unmount {}: fusermount3 is not installed (apt-get install fuse3)".format(mountpoint))
    res = subprocess.run([tool, "-u", str(mountpoint)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise DvfsError("cannot unmount {}: {}".format(mountpoint, res.stdout.decode(errors="replace").strip()))
    sweep_killed_simulations()  # the temporary tree of a server killed with SIGKILL, once a minute old
