"""The DVFS controller: pins CPU and GPU operating points, counting and minimising sysfs writes.

Guards (see docs/reliability.md): a :class:`~edgeexit.guards.thermal.ThermalGuard` stops any raise of
the operating point while the board is hot (``guard_events``); every pin is read back and a write the
kernel accepted but the clock did not follow is reported (``honour_events``); restore checks that
nobody else changed a domain since edgeexit last wrote it and leaves such a domain alone
(:class:`RestoreReport.conflicts`).
"""
from __future__ import annotations

import contextlib
import errno
import numbers
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

from edgeexit.boards.config import BoardConfig
from edgeexit.boards.sysfs import Sysfs
from edgeexit.dvfs.domains import CpufreqPolicy, DevfreqDevice, FreqDomain, find_gpu
from edgeexit.signals import signals_held
from edgeexit.dvfs.state import domains_problem
from edgeexit.errors import DvfsError, EdgeExitError, StateFileError, SysfsPermissionError, warn_stderr
from edgeexit.guards.honoured import check_honoured, snap_to_table
from edgeexit.guards.thermal import ThermalGuard

FreqArg = Union[int, str]
PIN_METHODS = ("auto", "userspace", "minmax")
FIRMWARE_RECHECK_S = 5.0  # how long a Pi's vcgencmd answer for one requested clock is reused
# What identifies "the state edgeexit left" in a domain: the governor, min, and the userspace request
# (scaling_setspeed / userspace/set_freq; None while the governor is another). Someone else changing any of
# them makes the domain a conflict: left as found and reported; `restore --force` restores it anyway.
OWNED_FIELDS = ("governor", "min", "setspeed", "set_freq")
# max is recorded too (RECORDED_FIELDS) but decided on its own. Thermal cooling and nvpmodel lower it by
# themselves during a run, so a changed max is no reason to leave the whole domain pinned (a conflict);
# but writing the saved max back over it would undo that cap, or another tool's limit. So the rest of the
# domain is restored, max is left as it shows (a saved min above it is capped to it where the kernel refuses
# it), and a warning says so (RestoreReport.warnings). With --force the saved max is written too.
RECORDED_FIELDS = OWNED_FIELDS + ("max",)


@dataclass(frozen=True)
class RestoreConflict:
    """A domain changed by someone else since edgeexit last wrote it: left as found, not restored."""

    domain: str
    path: str
    field: str
    edgeexit_left: Optional[str]
    found: Optional[str]
    saved: Optional[str]

    def describe(self) -> str:
        to = "" if self.saved is None else " to the saved {!r}".format(self.saved)  # None: it had none (no userspace)
        return "{} {} was changed outside edgeexit ({} is {!r}, edgeexit left {!r}); left as found, not restored" \
               "{}".format(self.domain, self.path, self.field, self.found, self.edgeexit_left, to)


@dataclass
class RestoreReport:
    """What a restore did: writes made, domains left alone because of conflicts, domains that failed."""

    writes: int = 0
    restored: List[str] = field(default_factory=list)
    conflicts: List[RestoreConflict] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)  # restored, but not exactly (a max left as found ...)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def translate_oserror(err: OSError, relpath: str, value: str, privileged: bool = True,
                      mode: Optional[int] = None) -> DvfsError:
    """An OSError from a sysfs write as an edgeexit error whose message names the fix. ``mode``: the
    node's permission bits when it exists (sysfs refuses root too where no write bit is set)."""
    if isinstance(err, DvfsError):
        return err  # the simulated kernel's own refusal (a corrupt tree): it names its fix already
    code = err.errno or errno.EIO
    what = "writing {!r} to {}".format(value, relpath)
    if code == errno.EACCES:
        if not privileged:
            return SysfsPermissionError(
                "permission denied {}: run as root (sudo), or install the udev rule from "
                "`edgeexit boards --udev-rule` and add yourself to group 'edgeexit'".format(what))
        if mode is not None and not mode & 0o222:
            return SysfsPermissionError(
                "the kernel refused {}: it has no write permission (mode {:04o}); if something "
                "made it read-only, make it writable again (chmod u+w), else check the board config's paths for "
                "this kernel".format(what, mode))
        return SysfsPermissionError(
            "the kernel refused {} (read-only attribute or missing node); check the board "
            "config's paths for this kernel".format(what))
    if code == errno.EPERM:
        # sysfs answers EPERM where a capability check fails; on a copied or simulated tree an immutable file
        return SysfsPermissionError(
            "{} is not permitted (EPERM): run as root (sudo), or install the udev rule from `edgeexit boards "
            "--udev-rule`; on a copied or simulated tree, check the file for the immutable attribute (lsattr; "
            "chattr -i)".format(what))
    if code == errno.EROFS:
        return SysfsPermissionError(
            "{} failed: the filesystem is read-only (EROFS), as /sys is in a container started without "
            "--privileged; run the container with --privileged (or /sys mounted read-write), or run on the "
            "host; a simulated or copied tree on a read-only filesystem: copy it somewhere writable".format(what))
    if code in (errno.EISDIR, errno.ENOTDIR):
        return DvfsError(
            "{} failed: {} is not a file ({}), so the board config's path is wrong for this kernel; check that "
            "--board names this board (`edgeexit boards` lists each board's paths)".format(
                what, relpath, errno.errorcode.get(code, code)))
    if code == errno.EINVAL:
        return DvfsError("{} failed: {}; check the value against the board's tables (`edgeexit status`)".format(
            what, os.strerror(code)))
    if code == errno.EUCLEAN:  # only the simulator says so (a FUSE mount passes just the errno on)
        return DvfsError("{} failed: {}: the simulated tree's state is corrupt; make a new one with `edgeexit sim "
                         "init`".format(what, os.strerror(code)))
    if code in (errno.EBUSY, errno.EAGAIN):
        return DvfsError("{} failed: {} (the kernel was busy, e.g. a CPU going on or offline); run again".format(
            what, os.strerror(code)))
    return DvfsError("{} failed: {}; the driver refused it: check `dmesg`, and that --board names this board".format(
        what, os.strerror(code)))


#: Nodes whose read is not the last request: scaling_setspeed shows the running clock [Kus], and min/max show
#: the effective limits (5.10+ QoS collapses min to a lower max; 4.9 bumps max to a table entry). A value shown
#: there may still differ from the request the kernel goes back to when a cap lifts, so where this controller
#: last wrote another value there, the write is made; a node it never wrote is left as it shows (a restore of a
#: domain the run never touched writes nothing).
REQUEST_HIDDEN = ("/scaling_setspeed", "/scaling_min_freq", "/scaling_max_freq", "/min_freq", "/max_freq")
#: A restore by a controller that wrote nothing (``edgeexit restore`` after a SIGKILL) does not know what the run
#: asked for: setspeed of a domain the run touched is written even where it shows the saved value (a cap may hide
#: the run's pin there, which comes back when the cap lifts). Writing the saved value is harmless where it was not
#: hidden. Min and max are not: 4.9 shows a max bumped to a table entry, and writing that back changes the request.
UNKNOWN_AFTER_KILL = ("/scaling_setspeed",)

class DvfsController:
    """Pins every CPU policy to one frequency and the GPU devfreq device to another.

    ``before_first_write`` runs once, before the first real write (the session saves the state
    file there). ``method``: "auto" uses the userspace governor where available, else min/max.
    """

    def __init__(self, board: BoardConfig, sysfs: Sysfs, before_first_write: Optional[Callable[[], None]] = None,
                 method: str = "auto", guard: Optional[ThermalGuard] = None,
                 on_change: Optional[Callable[[], None]] = None,
                 actual_cpu_khz: Optional[Callable[[], Optional[int]]] = None,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        if method not in PIN_METHODS:
            raise DvfsError("unknown pin method {!r}; use one of {}".format(method, ", ".join(PIN_METHODS)))
        self.board = board
        self.sysfs = sysfs
        self.method = method
        self.write_count = 0
        self.guard = guard
        self.honour_events = []  # type: List[NotHonouredEvent]
        # (write_count, guard episodes, honour events) when the last run on this session ended: a run's summary
        # counts from there, so a second run on one session does not report the first one's writes again
        self.reported = (0, 0, 0)
        # per domain path: the OWNED_FIELDS as edgeexit last left them; paths whose change is under way
        self.expected = {}  # type: Dict[str, Dict[str, Optional[str]]]
        self.in_flight = set()  # type: Set[str]
        self._restoring = False  # inside restore_checked: a state file that cannot be marked does not stop it
        # Domains pinned again and again (a planned run): the state file keeps them in flight (see _pin).
        self.kept_in_flight = set()  # type: Set[str]
        self._pinned = set()  # type: Set[str]
        # per domain path: (the cap before edgeexit's last pin, the max that pin left; None while it runs)
        self._pin_caps: Dict[str, Tuple[int, Optional[int]]] = {}
        # the last value this controller wrote to each node; None where the kernel's request is unknown (a write
        # failed, or a restore after a SIGKILL: UNKNOWN_AFTER_KILL)
        self._written: Dict[str, Optional[str]] = {}
        self._before_first_write = before_first_write
        self._on_change = on_change
        self._actual_cpu_khz = actual_cpu_khz
        self.firmware_recheck_s = FIRMWARE_RECHECK_S
        self.clock = time.monotonic  # the firmware answers' age (s)
        self._cpu_target = None  # type: Optional[Tuple[FreqDomain, int]]  # the last CPU pin: (policy, request)
        self._firmware_tried = {}  # type: Dict[int, float]  # per target: when refresh_firmware_khz last asked
        self._firmware_seen = {}  # type: Dict[int, Tuple[int, float]]
        self._ran = {}  # type: Dict[str, Tuple[int, int]]  # per CPU policy: (cpufreq showed, ran) at the last pin
        self._warn = warn or warn_stderr
        self._warned_honour = set()  # type: Set[Any]
        self._changing = None  # type: Optional[FreqDomain]
        self._armed = False
        self.closed = False  # set once its session has restored the board: no write after that
        self.retry_hint = "run `edgeexit restore` to retry"  # its session names the board and root
        self.cpus = [CpufreqPolicy(sysfs, p.relpath, p.name, p.cpus) for p in board.cpu_policies]
        self._online = None  # type: Optional[List[CpufreqPolicy]]  # the policies pins reach, read once
        self._offline_note = None  # type: Optional[str]
        self.gpu = None  # type: Optional[DevfreqDevice]
        if board.gpu is not None:
            path = find_gpu(sysfs, board.gpu.devfreq_paths, board.gpu.of_node_names)
            if path is not None:
                self.gpu = DevfreqDevice(sysfs, path, "gpu")

    @property
    def domains(self) -> List[FreqDomain]:
        return list(self.cpus) + ([self.gpu] if self.gpu is not None else [])

    def online_cpus(self) -> List[CpufreqPolicy]:
        """The CPU policies with an online CPU, read on first use. The kernel refuses every write to a
        policy whose CPUs are all offline (TX2 Denver in nvpmodel MAXP_CORE_ARM), so those are left out of
        pins, the saved state and the restore, and said once."""
        if self._online is None:
            self._online = [d for d in self.cpus if d.online()]
            off = [d for d in self.cpus if d not in self._online]
            if off and self._online:
                self._offline_note = (
                    "cpufreq {} every CPU offline, so the kernel refuses its writes: neither pinned nor restored; "
                    "to pin it too, bring its CPUs online first (an nvpmodel mode with them, or echo 1 > "
                    "/sys/devices/system/cpu/cpuN/online)".format(
                        ", ".join("{} (CPUs {})".format(d.name, _cpulist(d.cpus())) for d in off)
                        + (" has" if len(off) == 1 else " have")))
        return self._online

    def _say_offline(self) -> None:
        """Say the offline policies once, at the first CPU pin: after a bad --cpu-khz has had its one line."""
        if self._offline_note is not None:
            self._warn(self._offline_note)
            self._offline_note = None

    def _require_cpus(self) -> List[CpufreqPolicy]:
        online = self.online_cpus()
        if not online:
            raise DvfsError("no CPU of board {}'s cpufreq policies is online ({}: every cpuN/online reads 0), so the "
                            "kernel refuses every CPU frequency write; bring a CPU online (nvpmodel -m <mode>, or "
                            "echo 1 > /sys/devices/system/cpu/cpuN/online), or check that --board names this "
                            "board".format(self.board.name, ", ".join(
                                "{} CPUs {}".format(d.name, _cpulist(d.cpus())) for d in self.cpus)))
        return online

    # --- writes ---------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise DvfsError("this controller's board session is closed, so nothing would restore the clocks it "
                            "writes; open a new one with `with open_board(...) as session:`")

    def _write(self, relpath: str, value: str) -> None:
        self._check_open()
        try:
            if self.sysfs.exists(relpath) and self.sysfs.read(relpath).strip() == value and (
                    not relpath.endswith(REQUEST_HIDDEN) or self._written.get(relpath, value) == value):
                return  # no-op: the kernel already holds this value
        except OSError:
            pass  # unreadable (0400): write anyway
        dom = self._changing
        if dom is not None and dom.relpath not in self.in_flight:
            # write-ahead: a run killed from here on must not take this domain's state for someone else's
            self.in_flight.add(dom.relpath)
            if self._armed and self._on_change is not None and dom.relpath not in self.kept_in_flight:
                try:
                    self._on_change()
                except OSError as err:
                    if not self._restoring:
                        raise  # a pin: nothing may change that the state file does not cover
                    # A restore goes on: putting the clocks back matters more than marking them in flight. The file
                    # still holds the saved values; a restore killed from here on finds this domain as a conflict
                    # (kept, reported, --force restores it), never lost.
                    self._warn("restoring {} without marking it in the state file, which cannot be saved ({})".format(
                        dom.relpath, getattr(err, "strerror", None) or err))
        if not self._armed:
            if self._before_first_write is not None:
                self._before_first_write()  # raises when nothing could save the clocks: nothing written yet
            self._armed = True
        try:
            with signals_held():  # one write is one syscall on a board, but many files in the simulator
                self.sysfs.write(relpath, value)
                # recorded before a held Ctrl-C or SIGTERM is raised: the kernel has the value now
                self._written[relpath] = value
                self.write_count += 1
        except OSError as err:
            # what the kernel holds after a failed write is unknown: a restore must write this node
            self._written[relpath] = None
            raise translate_oserror(err, relpath, value, self.sysfs.privileged, self._mode(relpath)) from None

    def _mode(self, relpath: str) -> Optional[int]:
        try:
            return os.stat(str(self.sysfs.path(relpath))).st_mode & 0o777
        except (OSError, ValueError):
            return None

    def _pin(self, dom: FreqDomain, target: int) -> int:
        """Pin one domain (unless the thermal guard holds a raise); record what edgeexit left."""
        # Never above the max (an nvpmodel mode's cap: its power budget). A userspace pin stays under it anyway
        # (the kernel clamps setspeed), but a min/max pin writes max itself, and would replace the cap with the
        # table top: an explicit min/max pin, a GPU pin where the userspace write is refused (the udev rule), or
        # `auto` on a kernel without the userspace governor. So min/max pins go no higher than the ceiling.
        cap = self._max_cap(dom)
        ceiling = None if target <= cap else max([f for f in dom.available() if f <= cap] or [cap])
        if self.guard is not None:
            cur = dom.current()
            runs = target if ceiling is None else ceiling
            if runs > cur and not self.guard.allow_raise(dom.name, cur, runs, dom.unit):
                return cur  # hot: keep the lower operating point (guard_events says so)
        self._pin_caps[dom.relpath] = (cap, None)  # until the pin ends, the max shown may be its own
        self._changing = dom
        try:
            effective = shown = dom.pin(target, self._write, self.method, ceiling)
        finally:
            self._changing = None
        self._pin_caps[dom.relpath] = (cap, dom.effective_limits()[1])
        if dom.relpath in self.in_flight:
            self.expected[dom.relpath] = owned_state(dom.save())
            self.in_flight.discard(dom.relpath)
            if dom.relpath in self._pinned:
                # Pinned again: the state file keeps it in flight from now on, so later pins write no state file.
                # Each save is an fsync'd file write (~1.5 ms here, more on an SD card), two per pin, in the middle
                # of an inference when a planner pins between blocks. The cost: after a SIGKILL, restore puts this
                # domain back without checking for someone else's change, which the run's next pin would have
                # overwritten anyway. A session's own restore still checks (self.in_flight is exact).
                self.kept_in_flight.add(dom.relpath)
            elif self._on_change is not None:
                self._on_change()
            self._pinned.add(dom.relpath)
        source = dom.relpath + ("/scaling_cur_freq" if dom.kind == "cpu" else "/cur_freq")
        if dom.kind == "cpu" and self._actual_cpu_khz is not None:
            self._cpu_target = (dom, target)
            actual = self._firmware_khz(dom, target)
            if actual is not None:
                effective, source = actual, "vcgencmd measure_clock arm"
            elif "no-firmware-clock" not in self._warned_honour:
                self._warned_honour.add("no-firmware-clock")
                self._warn("`vcgencmd measure_clock arm` did not answer, so CPU pins are read back from {}, which "
                           "on a Raspberry Pi echoes the request: a firmware floor or throttling goes unseen; install "
                           "raspi-utils and run as root or in the video group".format(source))
        self._check_honoured(dom, target, effective, source, None if ceiling is None else cap)  # said, and learnt
        if dom.kind == "cpu":
            self._ran[dom.name] = (shown, effective)
        return effective

    def _firmware_khz(self, dom: FreqDomain, target: int) -> Optional[int]:
        """The clock the firmware runs for ``target``, snapped to the table. A vcgencmd call forks a process
        (milliseconds on a Pi, on the inference's critical path when the planner re-pins mid-inference), so
        each target's answer is reused for ``firmware_recheck_s`` before it is asked again."""
        now = self.clock()
        seen = self._firmware_seen.get(target)
        if seen is not None and now - seen[1] < self.firmware_recheck_s:
            return seen[0]
        return self._ask_firmware(dom, target, now)

    def _ask_firmware(self, dom: FreqDomain, target: int, now: float) -> Optional[int]:
        """Ask the firmware which clock runs (vcgencmd: a fork), snap it to the table and keep it for ``target``."""
        assert self._actual_cpu_khz is not None
        actual = self._actual_cpu_khz()
        if actual is None:
            return None
        khz = snap_to_table(dom.available(), actual)
        self._firmware_seen[target] = (khz, now)
        return khz

    def refresh_firmware_khz(self) -> None:
        """Ask the firmware again for the CPU clock pinned now when its answer is past half its reuse time.
        For idle time (a planner calls it between inferences): a pin of that clock in the middle of a later
        inference then finds a fresh answer instead of forking vcgencmd on the critical path."""
        if self._cpu_target is None or self._actual_cpu_khz is None or "no-firmware-clock" in self._warned_honour:
            return
        dom, target = self._cpu_target
        now = self.clock()
        seen = self._firmware_seen.get(target)
        tried = self._firmware_tried.get(target, float("-inf"))
        if max(seen[1] if seen is not None else float("-inf"), tried) > now - self.firmware_recheck_s / 2:
            return
        self._firmware_tried[target] = now  # a vcgencmd that fails now and then is not asked every inference
        self._ask_firmware(dom, target, now)

    def _check_honoured(self, dom: FreqDomain, target: int, effective: int, source: str,
                        cap: Optional[int] = None) -> None:
        event = check_honoured(dom.name, dom.unit, dom.available(), target, effective, source, cap)
        if event is None:
            return
        self.honour_events.append(event)
        key = (dom.name, effective)  # one line per clock that runs: a sweep into a floor warns once
        if key not in self._warned_honour:
            self._warned_honour.add(key)
            self._warn(event.describe())

    def _resolve(self, value: FreqArg, table: List[int], what: str) -> int:
        if isinstance(value, str):
            v = value.strip().lower()
            if v == "max":
                return table[-1]
            if v == "min":
                return table[0]
            try:
                value = int(v)
            except ValueError:
                raise DvfsError("{} must be a whole number of {}, 'min' or 'max', not {!r}".format(
                    what, "kHz" if what.endswith("khz") else "Hz", value)) from None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            # int(None) was a bare TypeError; int(1.5e6) would truncate a float without a word
            raise DvfsError("{} must be a whole number of {}, 'min' or 'max', not {!r}".format(
                what, "kHz" if what.endswith("khz") else "Hz", value))
        value = int(value)
        # Between two entries the kernel rounds to one (read back and reported); outside the table it would
        # clamp silently, and such a value is nearly always a unit slip (MHz for kHz, kHz for Hz).
        if table and not table[0] <= value <= table[-1]:
            unit = "kHz" if what.endswith("khz") else "Hz"
            raise DvfsError("{} {} is outside {}'s range {}-{} {}; pass a {} value in that range, or min/max".format(
                what, value, self.board.name, table[0], table[-1], unit, unit))
        if value <= 0:
            raise DvfsError("{} must be positive, not {}".format(what, value))
        return value

    @contextlib.contextmanager
    def warnings_to(self, warn: Callable[[str], None]) -> Iterator[None]:
        """Send this controller's warnings, and its thermal guard's, to ``warn`` inside the block (a run given its
        own ``warn``), then back to where they went."""
        old = self._warn, (self.guard.warn if self.guard is not None else None)
        self._warn = warn
        if self.guard is not None:
            self.guard.warn = warn
        try:
            yield
        finally:
            self._warn = old[0]
            if self.guard is not None and old[1] is not None:
                self.guard.warn = old[1]

    # --- public API -------------------------------------------------------------------------------
    def cpu_opps_khz(self) -> List[int]:
        """Ascending CPU operating points (kHz), as the kernel lists them (union over policies)."""
        return sorted(set(f for d in self._require_cpus() for f in d.available()))

    def gpu_opps_hz(self) -> List[int]:
        """Ascending GPU operating points (Hz); empty on boards without a GPU devfreq node."""
        return self.gpu.available() if self.gpu is not None else []

    def set_cpu_khz(self, freq_khz: FreqArg) -> int:
        """Pin every CPU policy; returns the effective kHz of the first policy, read back."""
        self._check_open()  # before the table is read: a closed --simulate session's tree is gone
        target = self._resolve(freq_khz, self.cpu_opps_khz(), "--cpu-khz")
        self._say_offline()
        effective = [self._pin(d, target) for d in self._require_cpus()]
        return effective[0]

    def set_gpu_hz(self, freq_hz: FreqArg) -> int:
        """Pin the GPU; returns the effective Hz read back."""
        if self.gpu is None:
            raise DvfsError("board {} has no GPU devfreq node{}; leave out --gpu-hz".format(
                self.board.name, "" if self.board.gpu is None else " under " + str(self.sysfs.root)))
        self._check_open()
        target = self._resolve(freq_hz, self.gpu.available(), "--gpu-hz")
        return self._pin(self.gpu, target)

    @property
    def guard_events(self) -> List[Dict[str, Any]]:
        """Hot episodes during which raises were held back (one dict per episode; see ThermalEvent)."""
        return [e.to_dict() for e in self.guard.events] if self.guard is not None else []

    @property
    def thermal_hold(self) -> bool:
        """Whether the thermal guard is holding raises back right now (as of its last check)."""
        return self.guard is not None and self.guard.hot

    def cpu_khz(self) -> int:
        """What cpufreq shows for the first policy (on a Raspberry Pi: the request)."""
        return self._require_cpus()[0].current()

    def running_cpu_khz(self) -> int:
        """The clock the first policy runs: the read-back of edgeexit's last pin while cpufreq still shows
        what it showed then (on a Pi, the firmware's clock, not the request), else what cpufreq shows."""
        shown = self.cpu_khz()
        ran = self._ran.get(self._require_cpus()[0].name)
        return ran[1] if ran is not None and ran[0] == shown else shown

    def gpu_hz(self) -> Optional[int]:
        return self.gpu.current() if self.gpu is not None else None

    # --- save / restore ----------------------------------------------------------------------------
    def snapshot(self) -> List[Dict[str, Any]]:
        """Every value the controller may touch, per domain; also starts tracking what edgeexit leaves."""
        doms = list(self.online_cpus()) + ([self.gpu] if self.gpu is not None else [])  # type: List[FreqDomain]
        snap = [{"kind": d.kind, "name": d.name, "path": d.relpath, "saved": d.save()} for d in doms]
        for entry in snap:
            self.expected.setdefault(entry["path"], owned_state(entry["saved"]))
        return snap

    def cpu_cap_khz(self) -> Optional[int]:
        """The highest clock the kernel lets every online CPU policy run: the lowest ``scaling_max_freq`` (an
        nvpmodel mode, a thermal cap or another tool lowers it). Where that max is still the one edgeexit's own
        last pin left, the cap in force before that pin instead: its own min/max pin is no cap (a cap set since
        shows as another max). None where a limit cannot be read."""
        try:
            caps = [self._max_cap(d) for d in self.online_cpus()]
        except (OSError, EdgeExitError, ValueError):
            return None
        return min(caps) if caps else None

    def cpu_floor_khz(self) -> Optional[int]:
        """The lowest clock the kernel's governor may pick on every online CPU policy: the highest
        ``scaling_min_freq`` (an nvpmodel MIN_FREQ). None where a limit cannot be read."""
        try:
            floors = [d.limits()[0] for d in self.online_cpus()]
        except (OSError, EdgeExitError, ValueError):
            return None
        return max(floors) if floors else None

    def _max_cap(self, dom: FreqDomain) -> int:
        """The highest clock ``dom``'s max allows: as shown, or, where the max shown is still the one edgeexit's
        last pin left (a min/max pin writes it; a userspace pin leaves it), the cap before that pin; after a pin
        that failed half way, that cap too. Raises OSError or DvfsError if unreadable."""
        shown = dom.effective_limits()[1]
        cap, left = self._pin_caps.get(dom.relpath, (shown, shown))
        if left is None:
            return cap  # what shows may be the failed pin's own max
        return cap if shown == left else shown  # a max moved since edgeexit's pin is someone else's cap

    def restore(self, snapshot: List[Dict[str, Any]]) -> int:
        """Write ``snapshot`` back unconditionally (no-op writes skipped); returns the number of writes."""
        report = self.restore_checked(snapshot, force=True)
        return report.writes

    def restore_checked(self, snapshot: List[Dict[str, Any]],
                        expected: Optional[Dict[str, Dict[str, Optional[str]]]] = None,
                        in_flight: Optional[Set[str]] = None, force: bool = False) -> RestoreReport:
        """Write ``snapshot`` back, domain by domain, without overwriting someone else's change.

        A domain is restored when it is as edgeexit left it (``expected``, default: this controller's
        own record), when it already equals the snapshot, or when edgeexit was in the middle of
        changing it (``in_flight``: a run, or a restore, killed mid-change). Otherwise it is a conflict:
        left as found and reported (``force=True`` restores it anyway). A max someone else changed is
        left as it shows, with a warning (see RECORDED_FIELDS). Every domain is tried even if one fails;
        failures are raised together at the end as one DvfsError.

        Restore writes are marked in flight like a pin's (the state file says so before the first one,
        through ``on_change``): a restore killed half way, between the two governor writes that make a
        devfreq device forget its request say, leaves edgeexit's own intermediate state, which the next
        restore completes instead of calling it someone else's.
        """
        problem = domains_problem(snapshot, allow_empty=True)
        if problem:  # checked before the first write: a damaged entry must not restore half a board
            raise StateFileError("the saved state is damaged: {}; nothing was restored; check the board with "
                                 "`edgeexit status` and set its clocks back by hand, then delete the state "
                                 "file".format(problem))
        report = RestoreReport()
        before = self.write_count
        self._armed = True  # restoring never triggers a new save
        self._restoring = True
        try:
            return self._restore_domains(snapshot, expected, in_flight, force, report, before)
        finally:
            self._restoring = False

    def _restore_domains(self, snapshot: List[Dict[str, Any]], expected: Optional[Dict[str, Dict[str, Optional[str]]]],
                         in_flight: Optional[Set[str]], force: bool, report: RestoreReport, before: int) -> RestoreReport:
        exp = self.expected if expected is None else expected
        if in_flight is not None:
            # the caller's own set: what this restore marks in flight is added to it, for its on_change to save
            self.in_flight = in_flight if isinstance(in_flight, set) else set(in_flight)
        flying = self.in_flight
        by_path = {d.relpath: d for d in self.domains}
        for entry in snapshot:
            path, saved, kind, name = str(entry["path"]), dict(entry["saved"]), entry["kind"], str(entry["name"])
            dom = by_path.get(path)
            if dom is None:
                dom = DevfreqDevice(self.sysfs, path, name) if kind == "gpu" else CpufreqPolicy(self.sysfs, path, name)
            try:
                keep_max = None  # type: Optional[int]
                if not force and path not in flying and path in exp:
                    now, left, was = owned_state(dom.save()), exp[path], owned_state(saved)
                    if isinstance(dom, CpufreqPolicy) and now.get("setspeed") is not None:
                        # scaling_setspeed shows policy->cur, which drivers that count the clock (tegra194)
                        # may report a little off the table entry: compare the entry it stands for
                        try:
                            now["setspeed"] = str(snap_to_table(dom.available(), int(str(now["setspeed"]))))
                        except ValueError:
                            pass
                    f = _changed_by_others(now, left)
                    if f is not None and any(now.get(k) != was.get(k) for k in OWNED_FIELDS):
                        report.conflicts.append(RestoreConflict(name, path, f, left.get(f), now.get(f), saved.get(f)))
                        continue
                    if left.get("max") is not None and now.get("max") not in (left.get("max"), was.get("max")):
                        keep_max = int(str(now["max"]))
                        report.warnings.append(
                            "{} {}: its max is {}, not the {} it showed after edgeexit's last pin (a thermal cap, "
                            "nvpmodel or another tool changed it): left as found, not restored to the saved {}; the "
                            "rest of the domain was restored".format(name, path, now.get("max"), left.get("max"), saved.get("max")))
                if isinstance(dom, CpufreqPolicy) and not dom.online():
                    if dom.save() != saved:  # pinned, then unplugged: the kernel refuses the writes
                        report.errors.append("{}: its CPUs ({}) are offline, so the kernel refuses its writes; bring "
                                             "them online (on a Jetson the nvpmodel mode that has them, nvpmodel -m "
                                             "<mode>; else echo 1 > /sys/devices/system/cpu/cpuN/online)".format(
                                                 path, _cpulist(dom.cpus())))
                    continue
                if (path in exp or path in flying) and not any(k.startswith(path + "/") for k in self._written):
                    for node in UNKNOWN_AFTER_KILL:  # touched by a run this controller did not run
                        self._written[path + node] = None
                self._changing = dom  # write-ahead, as for a pin (see _write)
                try:
                    # keep_max only when set: restore(saved, write) stays the call domains (and wrappers) know
                    note = dom.restore(saved, self._write) if keep_max is None else \
                        dom.restore(saved, self._write, keep_max)
                finally:
                    self._changing = None
                self._pin_caps.pop(path, None)  # put back: what it shows next is no pin of edgeexit's
                if note:
                    report.warnings.append(note)
                report.restored.append(path)
            except (ValueError, TypeError) as err:
                report.errors.append("{}: saved values unusable ({})".format(path, err))
            except DvfsError as err:
                report.errors.append(str(err))
            except OSError as err:  # a node that cannot be read now (EIO, EBUSY): the other domains still go back
                report.errors.append("{}: {}".format(path, err.strerror or err))
        for w in report.warnings:
            self._warn(w)
        report.writes = self.write_count - before
        if report.errors:
            raise DvfsError("restoring the board failed for {} domain(s): {}; the saved state is kept, {}".format(
                len(report.errors), " | ".join(report.errors), self.retry_hint))
        return report


def _changed_by_others(now: Dict[str, Optional[str]], left: Dict[str, Optional[str]]) -> Optional[str]:
    """The first OWNED_FIELDS field that shows otherwise than edgeexit left it, for a reason other than a
    lowered max (which the kernel applies to what some fields show, with no one writing them); else None."""
    for f in OWNED_FIELDS:
        if f not in left or now.get(f) == left.get(f) or _follows_max(f, now, left):
            continue  # (not in left: a state file from a version that did not record it)
        return f
    return None


def _follows_max(f: str, now: Dict[str, Optional[str]], left: Dict[str, Optional[str]]) -> bool:
    """Whether field ``f`` shows otherwise only because max was lowered below it: 5.10+ show min = max
    when min > max [K510][K510df]; scaling_setspeed shows policy->cur, which a max below the request pulls
    down to max, and back up when it lifts [Kus][Kset]."""
    try:
        mx, shown, was = int(str(now.get("max"))), int(str(now.get(f))), int(str(left.get(f)))
    except ValueError:
        return False
    if f == "min":
        return shown == mx < was
    if f == "setspeed":
        return shown <= mx < was
    return False


def _cpulist(cpus: List[int]) -> str:
    return ",".join(str(c) for c in cpus) or "?"


def owned_state(saved: Dict[str, Optional[str]]) -> Dict[str, Optional[str]]:
    """The RECORDED_FIELDS of a domain's saved values (what decides "someone else changed it")."""
    return {k: (None if saved.get(k) is None else str(saved.get(k))) for k in RECORDED_FIELDS}
