"""``SimulatedSysfs``: the Sysfs interface over a simulated tree, applying the kernel rules in-process."""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Optional, Union

from edgeexit.boards.sysfs import Sysfs, read_file
from edgeexit.sim.kernel import SimulatedKernel


class SimulatedSysfs(Sysfs):
    """Reads the tree's files; every write goes through :meth:`SimulatedKernel.write`.

    ``unprivileged=True`` models a non-root process (reads of 0400 files and writes to root-only
    0644 files fail with EACCES), so permission handling is testable while CI runs as root.
    """

    def __init__(self, root: Path, kernel: Optional[SimulatedKernel] = None, unprivileged: bool = False) -> None:
        super().__init__(root)
        self.kernel = kernel if kernel is not None else SimulatedKernel(self.root)
        self.unprivileged = unprivileged

    @property
    def privileged(self) -> bool:
        return not self.unprivileged

    def read(self, relpath: str) -> str:
        path = self.path(relpath)
        code = self.kernel.read_error(relpath)
        if code is not None:
            raise OSError(code, os.strerror(code), str(path))
        if self.unprivileged and path.exists() and not (path.stat().st_mode & 0o044):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read_file(path).decode("utf-8", "replace").rstrip("\n")

    def write(self, relpath: str, value: Union[str, int]) -> None:
        path = self.path(relpath)
        if self.unprivileged and path.exists() and not (path.stat().st_mode & 0o022):
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        try:
            self.kernel.write(relpath, "{}\n".format(value).encode())
        except OSError as err:
            if err.filename is None:
                err.filename = str(path)
            raise
