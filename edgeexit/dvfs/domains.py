"""One small interface per clock domain: a cpufreq policy (kHz) or a devfreq device (Hz).

Domains only read through the Sysfs they are given and write through a ``Writer`` (which skips
no-op writes, counts writes, saves state before the first one and translates errors).
"""
from __future__ import annotations

import abc
import errno
import posixpath
import re
from typing import Callable, Dict, List, Optional, Tuple

from edgeexit.boards.sysfs import Sysfs
from edgeexit.errors import DvfsError, SysfsPermissionError

WriteFn = Callable[[str, str], None]
_UINT = re.compile(r"^[0-9]{1,19}$")  # ASCII digits only: str.isdigit() also accepts '²'


class FreqDomain(abc.ABC):
    """A clock domain under ``relpath``; frequencies in its native unit (``unit``)."""

    kind = ""
    unit = ""

    def __init__(self, sysfs: Sysfs, relpath: str, name: str) -> None:
        self.sysfs = sysfs
        self.relpath = relpath
        self.name = name

    def _read(self, attr: str) -> str:
        try:
            return self.sysfs.read(self._path(attr)).strip()
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.ENOTDIR):
                raise self._missing(attr) from None
            raise

    def _missing(self, attr: str) -> DvfsError:
        # A node the board config expects is absent: the config does not describe this kernel (another
        # board, another JetPack) or a simulated tree was edited; a bare ENOENT names neither.
        return DvfsError("{} does not exist, so this kernel does not match the board config's {} nodes; check that "
                         "--board names this board and its kernel version (`edgeexit boards`), or recreate a "
                         "simulated tree with `edgeexit sim init`".format(self._path(attr), self.kind))

    def _path(self, attr: str) -> str:
        return "{}/{}".format(self.relpath, attr)

    def _garbage(self, attr: str, text: str) -> DvfsError:
        return DvfsError("{} holds {!r}, not a frequency, so it is not the {} attribute the board config expects; check "
                         "that --board names this board (`edgeexit boards` lists each board's paths)".format(
                             self._path(attr), text[:60], self.kind))

    def _int(self, attr: str) -> int:
        """A non-negative integer attribute; garbage raises DvfsError naming the file, never ValueError."""
        text = self._read(attr)
        if not _UINT.match(text):
            raise self._garbage(attr, text)
        return int(text)

    def _ints(self, attr: str) -> List[int]:
        """An ascending list attribute (``available_frequencies``); empty or garbage raises DvfsError."""
        text = self._read(attr)
        parts = text.split()
        if not parts or not all(_UINT.match(p) for p in parts):
            raise self._garbage(attr, text)
        return sorted(int(p) for p in parts)

    @abc.abstractmethod
    def available(self) -> List[int]:
        """Ascending operating points."""

    @abc.abstractmethod
    def current(self) -> int:
        """The effective frequency now."""

    @abc.abstractmethod
    def governor(self) -> str: ...

    @abc.abstractmethod
    def governors(self) -> List[str]: ...

    @abc.abstractmethod
    def limits(self) -> Tuple[int, int]: ...

    def effective_limits(self) -> Tuple[int, int]:
        """The clocks min and max allow (what :meth:`limits` shows, where that is never "no limit")."""
        return self.limits()

    @abc.abstractmethod
    def pin(self, freq: int, write: WriteFn, method: str = "auto", ceiling: Optional[int] = None) -> int:
        """Hold ``freq``; returns the effective frequency read back. ``ceiling``: the highest table entry a
        min/max pin may write as max (it writes max itself, so it would replace a cap); a userspace request
        is left to the kernel, which clamps it to max and follows it again when the cap lifts."""

    @abc.abstractmethod
    def save(self) -> Dict[str, Optional[str]]:
        """Every value :meth:`pin` may change, as read now."""

    def restorable_governor(self) -> str:
        """The governor now, refused where the domain does not offer it: a restore could never write it back,
        and the run would leave the domain pinned (a damaged tree's scaling_governor)."""
        gov = self.governor()
        try:
            offered = self.governors()
        except OSError:
            return gov  # unreadable list: the write at restore is the test
        if offered and gov not in offered:
            raise DvfsError("{} shows governor {!r}, which it does not offer ({}), so edgeexit could not put it back "
                            "after pinning; set one it offers first, or on a simulated tree make a new one with "
                            "`edgeexit sim init`".format(self.relpath, gov, " ".join(offered)))
        return gov

    @abc.abstractmethod
    def restore(self, saved: Dict[str, Optional[str]], write: WriteFn, keep_max: Optional[int] = None) -> Optional[str]:
        """Write ``saved`` (checked by dvfs.state.saved_problem) back in an order the kernel accepts.

        ``keep_max``: the max someone else set since (see DvfsController.restore_checked): it is left as it
        shows; a saved min above it is written as it was where the kernel keeps such a request (5.10+), else
        capped to it (4.9). Returns a note when the domain could not be put back
        exactly, else None."""

    def _restore_limits(self, saved: Dict[str, Optional[str]], write: WriteFn, keep_max: Optional[int],
                        min_attr: str, max_attr: str) -> None:
        lo, hi = int(str(saved["min"])), int(str(saved["max"]))
        if keep_max is None:
            self._write_limits(lo, hi, write, min_attr, max_attr)
        else:
            # max is not written at all (not even the 4.9 "max + 1" step of _write_limits): it is theirs (a
            # 4.9 devfreq max of 0 is no limit at all)
            try:
                # above the max: 5.10+ keeps the request (showing the max) and applies it again when the max lifts
                write(self._path(min_attr), str(lo))
            except DvfsError:
                if not keep_max or lo <= keep_max:
                    raise
                write(self._path(min_attr), str(keep_max))  # 4.9 refuses a min above the max: it follows the max

    def uses_userspace(self, method: str) -> bool:
        if method == "minmax":
            return False
        if method == "userspace" or "userspace" in self.governors():
            return True
        return False

    def _write_limits(self, new_min: int, new_max: int, write: WriteFn, min_attr: str, max_attr: str) -> None:
        """Write min and max in an order L4T 4.9 accepts: it refuses a min above the *requested* max.

        4.9 shows the table-verified max, which can sit above the request (max 918000 then min 918000 on a
        Nano shows 921600) [K49]; the shown min is the requested one. Min not rising: min first (it stays
        <= the requested max). Min rising: max first (the new max is above the old min). ``write`` skips a
        value already shown, so where the shown max may be such a bump, change it first.
        """
        cur_min, cur_max = self.limits()
        if new_min <= cur_min:
            write(self._path(min_attr), str(new_min))
            write(self._path(max_attr), str(new_max))
            return
        if new_max == cur_max and self._shown_max_may_exceed_request(cur_min, cur_max):
            # 1 kHz above: shown as written (or clamped to the top, which is then the request), so the
            # write of new_max that follows is not skipped and the requested max becomes new_max
            write(self._path(max_attr), str(new_max + 1))
        write(self._path(max_attr), str(new_max))
        write(self._path(min_attr), str(new_min))

    def _shown_max_may_exceed_request(self, cur_min: int, cur_max: int) -> bool:
        """Whether the shown max may be a table bump above the requested one (cpufreq only)."""
        return False

    def status(self) -> Dict[str, object]:
        lo, hi = self.limits()
        return {"name": self.name, "kind": self.kind, "path": self.relpath, "governor": self.governor(),
                "cur_" + self.unit: self.current(), "min_" + self.unit: lo, "max_" + self.unit: hi}


class CpufreqPolicy(FreqDomain):
    """``sys/devices/system/cpu/cpufreq/policyN`` (kHz)."""

    kind = "cpu"
    unit = "khz"

    def __init__(self, sysfs: Sysfs, relpath: str, name: str, config_cpus: Optional[List[int]] = None) -> None:
        super().__init__(sysfs, relpath, name)
        self.config_cpus = list(config_cpus or [])  # the board config's CPUs, where related_cpus cannot be read

    def available(self) -> List[int]:
        return self._ints("scaling_available_frequencies")

    def current(self) -> int:
        return self._int("scaling_cur_freq")  # cpuinfo_cur_freq is root-only (0400)

    def governor(self) -> str:
        return self._read("scaling_governor")

    def governors(self) -> List[str]:
        return self._read("scaling_available_governors").split()

    def limits(self) -> Tuple[int, int]:
        return self._int("scaling_min_freq"), self._int("scaling_max_freq")

    def _shown_max_may_exceed_request(self, cur_min: int, cur_max: int) -> bool:
        # table verify raises max to the next entry only when no entry lies in [min, max] [Kft]
        return not any(cur_min <= f < cur_max for f in self.available())

    def _requested_max(self, lo: int, hi: int) -> int:
        """The max to write back for a saved (min, shown max) pair. Where no table entry lies in [min, max),
        the max shown may be the entry the kernel bumped a request in [min, max) up to [K49][Kft]: nvpmodel
        5W's 918000 with jetson_clocks' min = max shows 921600 on a Nano. Writing 921600 back raised the cap
        a step for good, seen once min was lowered again. Every request in [min, max) caps the clock alike
        (no entry lies there), so: the max shown now where it lies there and the pair now shown is no bump
        (the run only lowered min: that is the request itself), else min (jetson_clocks' request)."""
        if lo >= hi or not self._shown_max_may_exceed_request(lo, hi):
            return hi
        cur_min, cur_max = self.limits()
        if lo <= cur_max < hi and not self._shown_max_may_exceed_request(cur_min, cur_max):
            return cur_max
        return lo

    def status(self) -> Dict[str, object]:
        online = self.online()  # an offline policy is left alone by the controller
        try:
            out = super().status()
        except OSError:
            if online:
                raise
            # Kernels with "cpufreq: Abort show/store for half initialized policy" (5.19, and backports)
            # answer EBUSY to every read of an inactive policy: its values are then unknown.
            out = {"name": self.name, "kind": self.kind, "path": self.relpath, "governor": None,
                   "cur_" + self.unit: None, "min_" + self.unit: None, "max_" + self.unit: None}
        out["online"] = online
        return out

    def cpus(self) -> List[int]:
        """The policy's CPUs (``related_cpus``). Where that cannot be read, the board config's: kernels from
        5.19 (and backports) answer EBUSY to every read of an inactive policy, related_cpus included, as
        on an Orin whose power mode takes a cluster offline. [] when neither is known."""
        try:
            text = self.sysfs.read(self._path("related_cpus"))
        except OSError:
            return list(self.config_cpus)
        return [int(c) for c in text.split() if _UINT.match(c)]

    def online(self) -> bool:
        """Whether any CPU of the policy is online. The kernel refuses every cpufreq write to a policy
        whose CPUs are all offline (EINVAL), e.g. the TX2's Denver policy in nvpmodel MAXP_CORE_ARM.
        A policy whose CPUs are not known counts as online (its writes then say what is wrong)."""
        return not self.cpus() or bool(self.online_cpus())

    def online_cpus(self) -> List[int]:
        """The policy's CPUs that are online. A CPU without an ``online`` file cannot be unplugged (often
        cpu0), and one whose file cannot be read is taken as online."""
        cpu_dir = posixpath.dirname(posixpath.dirname(self.relpath))  # .../cpu/cpufreq/policyN -> .../cpu
        out = []
        for c in self.cpus():
            try:
                if self.sysfs.read("{}/cpu{}/online".format(cpu_dir, c)).strip() == "0":
                    continue
            except OSError:
                pass
            out.append(c)
        return out

    def pin(self, freq: int, write: WriteFn, method: str = "auto", ceiling: Optional[int] = None) -> int:
        if self.uses_userspace(method):
            write(self._path("scaling_governor"), "userspace")
            if freq < self._int("scaling_min_freq"):
                # userspace clamps the request to [min, max] [Kus]: a floor such as the Orin Nano's nvpmodel
                # MIN_FREQ would hold it up, so it is lowered (saved and restored), as a min/max pin lowers it
                write(self._path("scaling_min_freq"), str(freq))
            write(self._path("scaling_setspeed"), str(freq))
        else:
            freq = freq if ceiling is None else min(freq, ceiling)
            self._write_limits(freq, freq, write, "scaling_min_freq", "scaling_max_freq")
        return self.current()

    def save(self) -> Dict[str, Optional[str]]:
        lo, hi = self.limits()
        gov = self.restorable_governor()
        return {"governor": gov, "min": str(lo), "max": str(hi),
                "setspeed": self._read("scaling_setspeed") if gov == "userspace" else None}

    def restore(self, saved: Dict[str, Optional[str]], write: WriteFn, keep_max: Optional[int] = None) -> Optional[str]:
        if keep_max is None:
            saved = dict(saved, max=str(self._requested_max(int(str(saved["min"])), int(str(saved["max"])))))
        self._restore_limits(saved, write, keep_max, "scaling_min_freq", "scaling_max_freq")
        write(self._path("scaling_governor"), str(saved["governor"]))
        if saved.get("setspeed") is not None:
            write(self._path("scaling_setspeed"), str(saved["setspeed"]))
        return None


class DevfreqDevice(FreqDomain):
    """A devfreq device such as the Jetson GPU (Hz)."""

    kind = "gpu"
    unit = "hz"

    def available(self) -> List[int]:
        return self._ints("available_frequencies")

    def current(self) -> int:
        return self._int("cur_freq")

    def governor(self) -> str:
        return self._read("governor")

    def governors(self) -> List[str]:
        return self._read("available_governors").split()

    def limits(self) -> Tuple[int, int]:
        return self._int("min_freq"), self._int("max_freq")

    def effective_limits(self) -> Tuple[int, int]:
        # L4T 4.9 devfreq shows 0 for a limit never written or written 0: no limit (update_devfreq skips it)
        lo, hi = self.limits()
        if lo and hi:
            return lo, hi
        table = self.available()
        return lo or table[0], hi or table[-1]

    #: userspace/set_freq refused this process once (see _pin_userspace): later pins go to min/max directly
    set_freq_denied = False

    def pin(self, freq: int, write: WriteFn, method: str = "auto", ceiling: Optional[int] = None) -> int:
        if self.uses_userspace(method) and not self.set_freq_denied and self._pin_userspace(freq, write, method):
            return self.current()
        freq = freq if ceiling is None else min(freq, ceiling)
        self._write_limits(freq, freq, write, "min_freq", "max_freq")
        return self.current()

    def _pin_userspace(self, freq: int, write: WriteFn, method: str) -> bool:
        """governor=userspace, then set_freq; False when set_freq may not be written, with the governor put
        back as it was. The kernel creates set_freq on GOV_START, root-owned 0644 [Kdfus]: no udev rule can
        open it to a group, so a udev-rule user pins with min_freq/max_freq instead (method "auto")."""
        before = self.governor()
        write(self._path("governor"), "userspace")
        try:
            write(self._path("userspace/set_freq"), str(freq))
            return True
        except PermissionError:  # SysfsPermissionError from the controller's writer, EACCES/EPERM from a plain one
            self.set_freq_denied = True
            if before != "userspace":
                write(self._path("governor"), before)  # never left in userspace without our request
            if method == "userspace":
                raise SysfsPermissionError(
                    "{} {}: userspace/set_freq is root's alone (created 0644 when the governor starts, so the "
                    "udev rule cannot open it); run as root (sudo), or pin with method 'auto' or 'minmax', which "
                    "write min_freq/max_freq".format(self.name, self.relpath)) from None
            return False

    def save(self) -> Dict[str, Optional[str]]:
        lo, hi = self.limits()
        gov = self.restorable_governor()
        request = self._read("userspace/set_freq") if gov == "userspace" else None
        out = {"governor": gov, "min": str(lo), "max": str(hi), "set_freq": request}  # type: Dict[str, Optional[str]]
        if out["set_freq"] == "undefined":
            # userspace with no request runs the clock it was entered at (devfreq's previous_freq): no file
            # but cur_freq says which, and restore must land on it again
            out["cur"] = str(self.current())
        return out

    def restore(self, saved: Dict[str, Optional[str]], write: WriteFn, keep_max: Optional[int] = None) -> Optional[str]:
        self._restore_limits(saved, write, keep_max, "min_freq", "max_freq")
        gov = str(saved["governor"])
        set_freq = saved.get("set_freq")
        target = None  # type: Optional[int]
        if gov == "userspace" and set_freq == "undefined":
            target = None if saved.get("cur") is None else int(str(saved["cur"]))
            self._reenter_userspace(saved, target, write, keep_max)
        write(self._path("governor"), gov)
        if gov == "userspace" and set_freq not in (None, "undefined"):
            write(self._path("userspace/set_freq"), str(set_freq))
        if target is not None and self.current() != target:
            return ("{} {}: back in the userspace governor with no request, but it runs {} Hz, not the {} Hz it ran "
                    "before (the kernel would not go there within min_freq/max_freq {}-{}); to run {} Hz, write it "
                    "to {}".format(self.name, self.relpath, self.current(), target, *self.effective_limits(),
                                   target, self._path("userspace/set_freq")))
        return None

    def _reenter_userspace(self, saved: Dict[str, Optional[str]], target: Optional[int], write: WriteFn,
                           keep_max: Optional[int]) -> None:
        """Put the device back in userspace with no request, at ``target`` Hz when known. Only a governor
        restart forgets a request, and a fresh userspace governor keeps the clock the governor before it
        left (previous_freq) [Kdfus]: so leave through a governor that lands on ``target`` (performance
        runs the top within max_freq; any governor runs ``target`` while min_freq = max_freq = target),
        then enter userspace."""
        if self.governor() == "userspace" and self._read("userspace/set_freq") == "undefined" and \
                (target is None or self.current() == target):
            return  # already so: nothing to forget, nowhere to go
        others = [g for g in self.governors() if g != "userspace"]
        if not others:
            return  # userspace is the only governor: a request cannot be forgotten
        via = "performance" if "performance" in others else others[0]
        if target is None:  # a state file from before edgeexit saved the clock: forget the request only
            if self.governor() == "userspace":
                write(self._path("governor"), via)
            return
        lo, hi = self.effective_limits()  # restored already: saved, or max left as someone else set it
        target = min(max(target, lo), hi)  # never widen their limits to get there (the note says so)
        top = max([f for f in self.available() if f <= hi] or [self.available()[0]])
        if via == "performance" and target == top:
            write(self._path("governor"), via)  # performance lands on the top within max_freq
        else:
            self._write_limits(target, target, write, "min_freq", "max_freq")
            write(self._path("governor"), via)
            write(self._path("governor"), "userspace")
            self._restore_limits(saved, write, keep_max, "min_freq", "max_freq")  # userspace keeps the clock


def find_gpu(sysfs: Sysfs, paths: List[str], of_node_names: List[str]) -> Optional[str]:
    """The GPU devfreq directory: the board's known paths first, then ``sys/class/devfreq/*``
    whose ``device/of_node/name`` matches (jetson_clocks' discovery [JC])."""
    for p in paths:
        if sysfs.exists(p + "/cur_freq"):
            return p
    if sysfs.exists("sys/class/devfreq"):
        for name in sysfs.listdir("sys/class/devfreq"):
            rel = "sys/class/devfreq/" + name
            try:
                node = sysfs.read(rel + "/device/of_node/name").rstrip("\0").strip()
            except OSError:
                continue
            if node in of_node_names:
                return rel
    return None
