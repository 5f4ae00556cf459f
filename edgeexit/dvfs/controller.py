"""The DVFS controller: pins CPU and GPU operating points, counting and minimising sysfs writes."""
from __future__ import annotations

import errno
import os
from typing import Any, Callable, Dict, List, Optional, Union

from edgeexit.boards.config import BoardConfig
from edgeexit.boards.sysfs import Sysfs
from edgeexit.dvfs.domains import CpufreqPolicy, DevfreqDevice, FreqDomain, find_gpu
from edgeexit.errors import DvfsError, SysfsPermissionError

FreqArg = Union[int, str]
PIN_METHODS = ("auto", "userspace", "minmax")


def translate_oserror(err: OSError, relpath: str, value: str, privileged: bool = True) -> DvfsError:
    """An OSError from a sysfs write as an edgeexit error whose message names the fix."""
    if err.errno == errno.EACCES:
        if not privileged:
            return SysfsPermissionError(
                "permission denied writing {!r} to {}: run as root (sudo), or install the udev rule from "
                "`edgeexit boards --udev-rule` and add yourself to group 'edgeexit'".format(value, relpath))
        return SysfsPermissionError(
            "the kernel refused writing {!r} to {} (read-only attribute or missing node); check the board "
            "config's paths for this kernel".format(value, relpath))
    return DvfsError("writing {!r} to {} failed: {}; check the value against the board's tables "
                     "(`edgeexit status`)".format(value, relpath, os.strerror(err.errno or errno.EIO)))


class DvfsController:
    """Pins every CPU policy to one frequency and the GPU devfreq device to another.

    ``before_first_write`` runs once, before the first real write (the session saves the state
    file there). ``method``: "auto" uses the userspace governor where available, else min/max.
    """

    def __init__(self, board: BoardConfig, sysfs: Sysfs, before_first_write: Optional[Callable[[], None]] = None,
                 method: str = "auto") -> None:
        if method not in PIN_METHODS:
            raise DvfsError("unknown pin method {!r}; use one of {}".format(method, ", ".join(PIN_METHODS)))
        self.board = board
        self.sysfs = sysfs
        self.method = method
        self.write_count = 0
        self._before_first_write = before_first_write
        self._armed = False
        self.cpus = [CpufreqPolicy(sysfs, p.relpath, p.name) for p in board.cpu_policies]
        self.gpu = None  # type: Optional[DevfreqDevice]
        if board.gpu is not None:
            path = find_gpu(sysfs, board.gpu.devfreq_paths, board.gpu.of_node_names)
            if path is not None:
                self.gpu = DevfreqDevice(sysfs, path, "gpu")

    @property
    def domains(self) -> List[FreqDomain]:
        return list(self.cpus) + ([self.gpu] if self.gpu is not None else [])

    # --- writes ---------------------------------------------------------------------------------
    def _write(self, relpath: str, value: str) -> None:
        try:
            if self.sysfs.exists(relpath) and self.sysfs.read(relpath).strip() == value:
                return  # no-op: the kernel already holds this value
        except OSError:
            pass  # unreadable (0400): write anyway
        if not self._armed:
            self._armed = True
            if self._before_first_write is not None:
                self._before_first_write()
        try:
            self.sysfs.write(relpath, value)
        except OSError as err:
            raise translate_oserror(err, relpath, value, self.sysfs.privileged) from None
        self.write_count += 1

    def _resolve(self, value: FreqArg, table: List[int], what: str) -> int:
        if isinstance(value, str):
            v = value.strip().lower()
            if v == "max":
                return table[-1]
            if v == "min":
                return table[0]
            try:
                return int(v)
            except ValueError:
                raise DvfsError("{} must be a number, 'min' or 'max', not {!r}".format(what, value)) from None
        if int(value) <= 0:
            raise DvfsError("{} must be positive, not {}".format(what, value))
        return int(value)

    # --- public API -------------------------------------------------------------------------------
    def cpu_opps_khz(self) -> List[int]:
        """Ascending CPU operating points (kHz), as the kernel lists them (union over policies)."""
        return sorted(set(f for d in self.cpus for f in d.available()))

    def gpu_opps_hz(self) -> List[int]:
        """Ascending GPU operating points (Hz); empty on boards without a GPU devfreq node."""
        return self.gpu.available() if self.gpu is not None else []

    def set_cpu_khz(self, freq_khz: FreqArg) -> int:
        """Pin every CPU policy; returns the effective kHz of the first policy, read back."""
        target = self._resolve(freq_khz, self.cpu_opps_khz(), "--cpu-khz")
        effective = [d.pin(target, self._write, self.method) for d in self.cpus]
        return effective[0]

    def set_gpu_hz(self, freq_hz: FreqArg) -> int:
        """Pin the GPU; returns the effective Hz read back."""
        if self.gpu is None:
            raise DvfsError("board {} has no GPU devfreq node{}; leave out --gpu-hz".format(
                self.board.name, "" if self.board.gpu is None else " under " + str(self.sysfs.root)))
        target = self._resolve(freq_hz, self.gpu.available(), "--gpu-hz")
        return self.gpu.pin(target, self._write, self.method)

    def cpu_khz(self) -> int:
        return self.cpus[0].current()

    def gpu_hz(self) -> Optional[int]:
        return self.gpu.current() if self.gpu is not None else None

    # --- save / restore ----------------------------------------------------------------------------
    def snapshot(self) -> List[Dict[str, Any]]:
        """Every value the controller may touch, per domain."""
        return [{"kind": d.kind, "name": d.name, "path": d.relpath, "saved": d.save()} for d in self.domains]

    def restore(self, snapshot: List[Dict[str, Any]]) -> int:
        """Write ``snapshot`` back (no-op writes skipped); returns the number of writes."""
        before = self.write_count
        self._armed = True  # restoring never triggers a new save
        by_path = {d.relpath: d for d in self.domains}
        for entry in snapshot:
            dom = by_path.get(entry["path"])
            if dom is None:
                if entry["kind"] == "gpu":
                    dom = DevfreqDevice(self.sysfs, entry["path"], entry["name"])
                else:
                    dom = CpufreqPolicy(self.sysfs, entry["path"], entry["name"])
            dom.restore(entry["saved"], self._write)
        return self.write_count - before
