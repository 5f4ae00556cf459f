"""The thermal guard: read the board's thermal zones (m°C) and refuse to raise clocks while hot.

Zones are found by their kernel ``type``, not by their number (:func:`zone_paths`): the config's
order is only where a zone is looked for first. Limits: ``limit_mc`` given explicitly applies to
every zone but a ``pmic`` one, which keeps its own (the Nano's PMIC-Die reads a fixed 100 °C, so any
lower limit would hold clocks all run); otherwise each zone's default comes from its trip points
(:func:`default_limit_mc`). A zone whose read fails (EAGAIN on an Orin
``cv*-thermal`` zone while the DLA/PVA are powered down, a missing node, garbage text) is skipped
for that check, never fatal. When no zone can be read at all the guard cannot know, so it lets
the change through and warns once.

A hot *episode* starts at the first check above a limit and ends at the first check where every
readable zone is at least ``hysteresis_mc`` below its limit; it is logged once and recorded as one
:class:`ThermalEvent` whose ``refused`` counts the raises held back during it.
"""
from __future__ import annotations

import numbers
import re
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List, Optional, Set

from edgeexit.boards.config import BoardConfig, ThermalZone
from edgeexit.boards.sysfs import Sysfs
from edgeexit.errors import ThermalError, warn_stderr

CRITICAL_MARGIN_MC = 10000  # with only a critical trip, hold 10 °C below it
HYSTERESIS_MC = 2000  # 2 °C, as the Pi 5 fan trips use [PI5DT]
# Plausible die temperatures; anything outside is a garbage read, not a temperature.
MIN_PLAUSIBLE_MC = -60000
MAX_PLAUSIBLE_MC = 200000
LIMIT_RANGE_MC = (20000, 150000)  # a limit outside 20..150 °C is a unit mistake (°C given for m°C)
ZONES_DIR = "sys/class/thermal"
ABSENT = "absent: no thermal zone of this type"


def zone_paths(board: BoardConfig, sysfs: Sysfs) -> List[Optional[str]]:
    """Each configured zone's directory, found by its ``type`` file; None where no zone has that type.

    The kernel numbers zones in device-tree order, which a board config can only assume; a zone
    read by number alone would show (and guard) one sensor under another's name. Where no zone's
    type can be read at all, the config's numbering is all there is to go by."""
    try:
        names = [n for n in sysfs.listdir(ZONES_DIR) if re.fullmatch(r"thermal_zone[0-9]+", n)]
    except OSError:
        names = []
    types = {}  # type: Dict[str, str]
    for name in sorted(names, key=lambda n: int(n[len("thermal_zone"):])):
        try:
            types[name] = sysfs.read("{}/{}/type".format(ZONES_DIR, name)).strip().lower()
        except (OSError, UnicodeDecodeError):
            continue
    if not types:
        return [z.relpath for z in board.thermal_zones]
    out = []  # type: List[Optional[str]]
    taken: Set[str] = set()
    for z in board.thermal_zones:
        want = z.type.lower()
        hits = [n for n, t in types.items() if t == want and n not in taken]
        first = "thermal_zone{}".format(z.index)  # where the config expects it, if that zone has the type
        pick = first if first in hits else (hits[0] if hits else None)
        if pick is not None:
            taken.add(pick)
        out.append(None if pick is None else "{}/{}".format(ZONES_DIR, pick))
    return out


def default_limit_mc(zone: ThermalZone) -> Optional[int]:
    """The zone's lowest passive/hot trip; else its lowest critical trip minus 10 °C; else None
    (active trips only switch fans on and are not a reason to hold clocks)."""
    throttling = [t for t, k in zip(zone.trips_mc, zone.trip_types) if k in ("passive", "hot")]
    if throttling:
        return min(throttling)
    critical = [t for t, k in zip(zone.trips_mc, zone.trip_types) if k == "critical"]
    if critical:
        return min(critical) - CRITICAL_MARGIN_MC
    return None


@dataclass(frozen=True)
class ZoneReading:
    """One zone read: ``temp_mc`` is None when the read failed (``error`` says why)."""

    zone: str
    relpath: str
    temp_mc: Optional[int]
    limit_mc: Optional[int]
    error: Optional[str] = None

    @property
    def over(self) -> bool:
        return self.temp_mc is not None and self.limit_mc is not None and self.temp_mc >= self.limit_mc


@dataclass
class ThermalEvent:
    """One hot episode. Units: m°C, s (``t_start_s``/``t_end_s`` on the guard's clock); ``last_refused`` holds
    the domain and the refused raise as ``from_khz``/``to_khz`` (cpufreq) or ``from_hz``/``to_hz`` (devfreq)."""

    zone: str
    temp_mc: int
    limit_mc: int
    t_start_s: float
    peak_temp_mc: int
    refused: int = 0
    t_end_s: Optional[float] = None
    last_refused: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def parse_temp_mc(text: str) -> int:
    """A thermal zone's ``temp`` file (m°C, one integer); ValueError for anything else."""
    value = int(text.strip())
    if not MIN_PLAUSIBLE_MC <= value <= MAX_PLAUSIBLE_MC:
        raise ValueError("{} m°C is not a plausible temperature".format(value))
    return value


class ThermalGuard:
    """Decides whether a clock may be raised now; see the module docstring."""

    def __init__(self, board: BoardConfig, sysfs: Sysfs, limit_mc: Optional[int] = None,
                 hysteresis_mc: int = HYSTERESIS_MC, clock: Callable[[], float] = time.monotonic,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        if limit_mc is not None and (not isinstance(limit_mc, numbers.Integral) or isinstance(limit_mc, bool)
                                     or not LIMIT_RANGE_MC[0] <= limit_mc <= LIMIT_RANGE_MC[1]):
            raise ThermalError("thermal limit {!r} m°C is not plausible; give it in millidegrees C as an integer "
                               "(e.g. 85000 for 85 °C)".format(limit_mc))
        self.board = board
        self.sysfs = sysfs
        self.limit_mc = None if limit_mc is None else int(limit_mc)
        self.hysteresis_mc = int(hysteresis_mc)
        self.clock = clock
        self.warn = warn or warn_stderr
        self.events = []  # type: List[ThermalEvent]
        self._episode = None  # type: Optional[ThermalEvent]
        self._warned_blind = False
        self._paths = None  # type: Optional[List[Optional[str]]]

    def zone_limit_mc(self, zone: ThermalZone) -> Optional[int]:
        if self.limit_mc is not None and zone.role != "pmic":
            return self.limit_mc
        return default_limit_mc(zone)

    def read(self) -> List[ZoneReading]:
        """Every configured zone, read now; failures come back with ``temp_mc=None``."""
        if self._paths is None:  # zones are not renumbered while the board runs
            self._paths = zone_paths(self.board, self.sysfs)
        out = []  # type: List[ZoneReading]
        for z, path in zip(self.board.thermal_zones, self._paths):
            limit = self.zone_limit_mc(z)
            if path is None:
                out.append(ZoneReading(z.type, z.relpath, None, limit, ABSENT))
                continue
            try:
                temp = parse_temp_mc(self.sysfs.read(path + "/temp"))
            except OSError as err:  # EAGAIN (Orin cv*-thermal), ENOENT, EIO: skip this zone
                out.append(ZoneReading(z.type, path, None, limit, "errno {}".format(err.errno)))
                continue
            except (ValueError, UnicodeDecodeError) as err:
                out.append(ZoneReading(z.type, path, None, limit, "unparsable: {}".format(err)))
                continue
            out.append(ZoneReading(z.type, path, temp, limit))
        return out

    @property
    def hot(self) -> bool:
        """Whether a hot episode is under way (as of the last :meth:`check`)."""
        return self._episode is not None

    def check(self) -> Optional[ThermalEvent]:
        """Read the zones and update the episode; returns the open episode while hot, else None."""
        readings = self.read()
        readable = [r for r in readings if r.temp_mc is not None]
        guarded = [r for r in readable if r.limit_mc is not None]
        if not readable and self.board.thermal_zones and not self._warned_blind:
            self._warned_blind = True
            self.warn("no thermal zone of board {} could be read ({}); the thermal guard cannot hold clocks".format(
                self.board.name, "; ".join("{} {}".format(r.zone, r.error) for r in readings)))
        over = [r for r in guarded if r.over]
        now = self.clock()
        if self._episode is None:
            if over:
                worst = max(over, key=lambda r: int(r.temp_mc or 0) - int(r.limit_mc or 0))
                assert worst.temp_mc is not None and worst.limit_mc is not None
                self._episode = ThermalEvent(worst.zone, worst.temp_mc, worst.limit_mc, now, worst.temp_mc)
                self.events.append(self._episode)
                self.warn("{} is at {:.1f} °C, at or above its {:.1f} °C limit: clocks will not be raised until it "
                          "cools by {:.1f} °C".format(worst.zone, worst.temp_mc / 1000.0, worst.limit_mc / 1000.0,
                                                     self.hysteresis_mc / 1000.0))
            return self._episode
        ep = self._episode
        for r in guarded:
            if r.zone == ep.zone and r.temp_mc is not None:
                ep.peak_temp_mc = max(ep.peak_temp_mc, r.temp_mc)
        still = [r for r in guarded if int(r.temp_mc or 0) > int(r.limit_mc or 0) - self.hysteresis_mc]
        if not still:
            ep.t_end_s = now
            self._episode = None
            return None
        return ep

    def allow_raise(self, domain: str, from_freq: int, to_freq: int, unit: str) -> bool:
        """False (and the refusal counted in the episode) while hot; lowering never asks.

        Frequencies are in the domain's own ``unit`` ("khz" for cpufreq, "hz" for devfreq), which names the
        keys the refusal is recorded under (``from_khz``/``to_khz`` or ``from_hz``/``to_hz``)."""
        ep = self.check()
        if ep is None:
            return True
        ep.refused += 1
        ep.last_refused = {"domain": domain, "from_" + unit: from_freq, "to_" + unit: to_freq}
        return False
