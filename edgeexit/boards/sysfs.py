"""One small interface for sysfs I/O, with the root passed in as a Path.

``HostSysfs`` does plain file I/O (a real board, or a FUSE mount of the simulator);
``edgeexit.sim.sysfs.SimulatedSysfs`` applies the board kernel's write rules in-process.
Errors stay ``OSError`` with the kernel's errno; callers translate them (see dvfs.errors).
"""
from __future__ import annotations

import abc
import errno
import os
import stat
from pathlib import Path
from typing import List, Union

from edgeexit.boards.validate import check_relpath_str


def read_file(path: Path) -> bytes:
    """A file's bytes, read with os.read (a sysfs read failing with EAGAIN, as Orin cv*-thermal does, must
    raise, where io.BufferedReader would return None). A FIFO or device there raises EINVAL instead of
    blocking the run for ever: opened without waiting for a writer, and refused after fstat."""
    fd = os.open(str(path), os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
            raise OSError(errno.EINVAL, "a FIFO or device, not a file", str(path))
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError as err:  # EISDIR, EAGAIN, EIO: named, as open() names its own failures
                if err.filename is None:
                    err.filename = str(path)
                raise
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


class Sysfs(abc.ABC):
    """Reads and writes files under ``root`` (``root / "sys/..."``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, relpath: str) -> Path:
        check_relpath_str(relpath)
        return self.root / relpath

    @abc.abstractmethod
    def read(self, relpath: str) -> str:
        """The file's text with the trailing newline removed (trailing spaces kept)."""

    @abc.abstractmethod
    def write(self, relpath: str, value: Union[str, int]) -> None:
        """Write ``value`` the way ``echo value > file`` does (one write call, newline appended)."""

    @property
    def privileged(self) -> bool:
        """Whether writes run with root's rights (decides the fix a permission error names)."""
        return not hasattr(os, "geteuid") or os.geteuid() == 0

    def exists(self, relpath: str) -> bool:
        return self.path(relpath).exists()

    def listdir(self, relpath: str) -> List[str]:
        return sorted(os.listdir(str(self.path(relpath))))

    def __repr__(self) -> str:
        return "{}({!r})".format(type(self).__name__, str(self.root))


class HostSysfs(Sysfs):
    """Plain file I/O: a real board (root ``/``) or the simulator's FUSE mount."""

    def read(self, relpath: str) -> str:
        return read_file(self.path(relpath)).decode("utf-8", "replace").rstrip("\n")

    def write(self, relpath: str, value: Union[str, int]) -> None:
        # O_WRONLY without O_CREAT: sysfs never creates files, and one write() is one store() call.
        # O_TRUNC as `echo v > attr` does: sysfs ignores it, and a plain-file tree keeps one value.
        fd = os.open(str(self.path(relpath)), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, "{}\n".format(value).encode())
        finally:
            os.close(fd)
