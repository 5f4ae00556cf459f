"""What the DVFS planner knows about the board: segment latency and board power per CPU operating point.

Two sources, chosen explicitly: a profile measured by ``edgeexit profile`` (JSON, format below), or
the board model from ``firmware_profiles/`` (:class:`PhysicsCostModel`). A profile without power
figures (a board without a meter) takes power from the board model and says so in ``source``.

Profile file (``schema: edgeexit-profile/1``)::

    {"schema": "edgeexit-profile/1", "board": "jetson-nano", "simulated": true,
     "model": "<bundle name>", "manifest_sha256": "<sha256 of the bundle's manifest.json>",
     "threads": 1, "interpreter": "litert 2.3.0",
     "latency_source": "simulated" | "host", "energy_source": "simulated" | "<meter source>" | null,
     "energy_basis": "<what the meter's total covers>",  # optional; metered profiles only
     "cpu_opps_khz": [102000, ...],                    # ascending, one column per entry below
     "transition_ms": 0.3,
     "segments": {"block0": {"macs": 112896, "latency_ms": [..per opp..], "energy_mj": [..] | null}, ...},
     "busy_power_mw": [..per opp..] | null, "idle_power_mw": [..per opp..] | null,
     "effective_cpu_khz": [..the clock read back at each opp..],  # optional; planning skips opps where it differs
     "created": "2026-11-22T12:00:00Z"}
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from edgeexit.bundle import Bundle, manifest_sha256
from edgeexit.bundle.fileio import read_json
from edgeexit.errors import CalibrationError
from edgeexit.jsonvalues import is_finite_number
from edgeexit.sim.physics import BoardPhysics

PROFILE_SCHEMA = "edgeexit-profile/1"
#: Bound on a profile's latencies (ms), powers (mW) and clocks (kHz): 1000 hours, 3.6 MW, 3.6 THz; anything
#: above is a damaged file, and products of larger values overflowed the planner's sums into inf.
MAX_PROFILE_VALUE = 3.6e9


class CostModel:
    """Latency (ms) of each segment and board power (mW) per CPU operating point (kHz)."""

    source = ""
    cpu_opps_khz: List[int] = []
    transition_ms = 0.0

    def segment_ms(self, label: str, freq_khz: int) -> float:
        raise NotImplementedError

    def busy_mw(self, freq_khz: int) -> float:
        raise NotImplementedError

    def idle_mw(self, freq_khz: int) -> float:
        raise NotImplementedError


class PhysicsCostModel(CostModel):
    """The board model (``firmware_profiles/<board>.toml``) applied to the bundle's segment MACs."""

    def __init__(self, physics: BoardPhysics, bundle: Bundle) -> None:
        self.physics = physics
        self.source = "board model ({})".format(physics.profile.source.name)
        # A request below a firmware floor runs the floor (Pi 5: 1.5 GHz) at the floor's voltage: it is no
        # operating point of its own, and on the board the read-back (vcgencmd) would contradict the plan.
        self.cpu_opps_khz = [f for f in physics.freqs_khz if f >= physics.real_floor_khz]
        self.transition_ms = physics.transition_s * 1e3
        self._macs = {s.label: s.macs for s in bundle.blocks + bundle.exits}
        self._ms: Dict[tuple, float] = {}

    def segment_ms(self, label: str, freq_khz: int) -> float:
        key = (label, freq_khz)
        v = self._ms.get(key)
        if v is None:
            v = self._ms[key] = self.physics.segment_s(self._macs[label], freq_khz) * 1e3
        return v

    def busy_mw(self, freq_khz: int) -> float:
        return self.physics.power(freq_khz, True).total_mw

    def idle_mw(self, freq_khz: int) -> float:
        return self.physics.idle_mw(freq_khz)


class ProfileCostModel(CostModel):
    """A measured profile; power from the profile where it has some, else from ``fallback``."""

    def __init__(self, data: Dict[str, Any], path: Path, fallback: Optional[CostModel] = None) -> None:
        self.data = data
        requested = [int(f) for f in data["cpu_opps_khz"]]
        self._col = {f: i for i, f in enumerate(requested)}
        # A request the board ran at another clock (the Pi 5's firmware floor, a cap) is no operating point of
        # its own, as in PhysicsCostModel: planning it would pin a clock that the read-back contradicts.
        ran = data.get("effective_cpu_khz") or requested
        self.cpu_opps_khz = [f for f, e in zip(requested, ran) if int(e) == f]
        if not self.cpu_opps_khz:
            raise CalibrationError("profile {}: no operating point ran at the clock it asked for (see its "
                                   "effective_cpu_khz); run `edgeexit profile` again once the board is not capped".format(path))
        self.transition_ms = float(data.get("transition_ms") or 0.0)  # finite, 0..MAX_TRANSITION_MS (_read_profile)
        self._lat = {k: [float(x) for x in v["latency_ms"]] for k, v in data["segments"].items()}
        self._busy = data.get("busy_power_mw")
        self._idle = data.get("idle_power_mw")
        self.fallback = fallback
        if (self._busy is None or self._idle is None) and fallback is None:
            raise CalibrationError("profile {} has no power figures; profile with a meter or pass a board model".format(path))
        if self._busy is None:
            power = "power from the {}".format(fallback.source if fallback else "?")
        elif data.get("energy_source") == "simulated":
            power = "simulated power"  # profiled on a simulated board: modelled, not measured
        else:
            basis = data.get("energy_basis")
            power = "power measured with {}{}".format(data.get("energy_source") or "a meter",
                                                        ": {}".format(basis) if isinstance(basis, str) and basis else "")
        self.source = "profile {} ({} latency, {})".format(path, data.get("latency_source", "?"), power)

    def _column(self, freq_khz: int) -> int:
        col = self._col.get(int(freq_khz))
        if col is None:
            raise CalibrationError("the profile has no column for {} kHz; run `edgeexit profile` again".format(freq_khz))
        return col

    def segment_ms(self, label: str, freq_khz: int) -> float:
        return self._lat[label][self._column(freq_khz)]

    def busy_mw(self, freq_khz: int) -> float:
        if self._busy is None:
            assert self.fallback is not None
            return self.fallback.busy_mw(freq_khz)
        return float(self._busy[self._column(freq_khz)])

    def idle_mw(self, freq_khz: int) -> float:
        if self._idle is None:
            assert self.fallback is not None
            return self.fallback.idle_mw(freq_khz)
        return float(self._idle[self._column(freq_khz)])


def _read_profile(path: Path, bundle: Bundle, board: Optional[str]) -> Dict[str, Any]:
    """A profile's JSON, checked against the bundle (and ``board`` unless None)."""
    if not os.path.lexists(str(path)):  # a mistyped path: profiling again would not help (never raises)
        raise CalibrationError("profile {} does not exist; check the path, or write one there with `edgeexit profile "
                               "--out {}`".format(path, path))
    data = read_json(Path(path), lambda why: CalibrationError(
        "cannot read profile {} ({}); run `edgeexit profile` again".format(path, why)))
    if not isinstance(data, dict) or data.get("schema") != PROFILE_SCHEMA:
        raise CalibrationError("{} is not an edgeexit profile ({}); run `edgeexit profile`".format(path, PROFILE_SCHEMA))
    if board is not None and not isinstance(data.get("board"), str):
        raise CalibrationError("profile {} names no board; run `edgeexit profile` again".format(path))
    if board is not None and data.get("board") != board:
        raise CalibrationError("profile {} was measured on {} but this run is on {}; profile this board".format(path, data.get("board"), board))
    if data.get("manifest_sha256") != manifest_sha256(bundle):
        raise CalibrationError("profile {} was measured for another model; run `edgeexit profile --model {}`".format(path, bundle.root))
    segments = data.get("segments")
    missing = [s.label for s in bundle.blocks + bundle.exits if not isinstance(segments, dict) or s.label not in segments]
    if missing:
        raise CalibrationError("profile {} lacks segments {}; run `edgeexit profile` again".format(path, ", ".join(missing)))
    why = _profile_problem(data, [s.label for s in bundle.blocks + bundle.exits])
    if why:
        raise CalibrationError("profile {} is malformed ({}); run `edgeexit profile` again".format(path, why))
    return data


#: Bounds of a profile's scalars. A frequency change takes microseconds to a few milliseconds on every supported
#: board; -1e9 or NaN ms used to be accepted and drove the planner's figures to nonsense.
MAX_TRANSITION_MS = 1000.0
MAX_PROFILE_THREADS = 64  # the --threads limit (edgeexit.cli.options.MAX_THREADS)


def _profile_problem(data: Dict[str, Any], labels: List[str]) -> Optional[str]:
    """What is wrong with a profile's table (one column per CPU operating point) or its scalars, or None."""
    threads = data.get("threads", 1)  # profiles before the key existed were measured with 1 thread
    if type(threads) is not int or not 1 <= threads <= MAX_PROFILE_THREADS:
        # "1" or null used to reach the thread-count check and read as "measured with 1 ... this run uses 1"
        return "threads must be an integer from 1 to {}, not {}".format(MAX_PROFILE_THREADS, json.dumps(threads))
    transition = data.get("transition_ms", 0.0)
    if transition is not None and not (is_finite_number(transition)
                                       and 0.0 <= transition <= MAX_TRANSITION_MS):
        return "transition_ms must be a number of milliseconds from 0 to {:g}, not {}".format(
            MAX_TRANSITION_MS, json.dumps(transition))
    opps = data.get("cpu_opps_khz")
    if not isinstance(opps, list) or not opps or not all(type(f) is int and f > 0 for f in opps):
        return "cpu_opps_khz must be a non-empty list of kHz"

    def column(v: Any, what: str) -> Optional[str]:
        # bounded: a segment of 1e308 ms passed as finite and overflowed the planner's energy sums
        ok = isinstance(v, list) and len(v) == len(opps) and all(
            is_finite_number(x) and 0 < x <= MAX_PROFILE_VALUE for x in v)
        return None if ok else "{} needs {} positive numbers up to {:g}, one per operating point".format(
            what, len(opps), MAX_PROFILE_VALUE)

    for label in labels:
        seg = data["segments"][label]
        why = column(seg.get("latency_ms") if isinstance(seg, dict) else None, label + " latency_ms")
        if why:
            return why
    for key in ("busy_power_mw", "idle_power_mw", "effective_cpu_khz"):
        why = column(data[key], key) if data.get(key) is not None else None
        if why:
            return why
    return None


def load_profile_json(path: Path, bundle: Bundle, board: str, fallback: Optional[CostModel] = None,
                      threads: Optional[int] = None, board_khz: Optional[List[int]] = None,
                      simulated: Optional[bool] = None) -> ProfileCostModel:
    """Read and check a profile written by ``edgeexit profile`` for this bundle and board (and, unless
    None, for runs with ``threads`` interpreter threads: latencies measured with 4 threads would plan a
    1-thread run too fast and miss its deadlines). ``simulated=False``: the run is on a real board, which
    must not plan from a simulated board's modelled figures."""
    data = _read_profile(path, bundle, board)
    if simulated is False and data.get("simulated") is True:
        raise CalibrationError(
            "profile {} was modelled on a simulated {}, not measured on this board, and a real board must not plan "
            "from the simulator's figures; run `sudo edgeexit profile --board {}` on the board (it writes "
            "profiles/{}.json in the bundle), or leave the profile out to plan from the board model".format(
                path, board, board, board))
    measured = data.get("threads", 1)  # an integer: checked in _read_profile
    if threads is not None and measured != threads:
        raise CalibrationError("profile {} was measured with {} interpreter thread(s) and this run uses {}; run `{}` "
                               "(or run with --threads {})".format(path, measured, threads,
                                                                   profile_command(board, simulated, threads, bundle,
                                                                   None if Path(path) == default_profile_path(
                                                                       bundle, board, bool(simulated), threads)
                                                                   else Path(path)), measured))
    if board_khz is not None:
        # The planner pins the profile's operating points: one the board's table lacks would be rounded by the
        # kernel (or refused mid-run), so the profile was measured on another board or firmware.
        foreign = [f for f in data["cpu_opps_khz"] if f not in set(board_khz)]
        if foreign:
            raise CalibrationError(
                "profile {} has CPU operating points {} kHz that this {}'s cpufreq table lacks; run `edgeexit profile` "
                "again on this board".format(path, ", ".join(str(f) for f in foreign), board))
    try:
        return ProfileCostModel(data, Path(path), fallback)
    except CalibrationError:
        raise  # already one line naming the fix (a ValueError too: it must not be wrapped again below)
    except (KeyError, TypeError, ValueError) as err:
        raise CalibrationError("profile {} is malformed ({}); run `edgeexit profile` again".format(path, err)) from None


def is_real_board_profile_path(path: Path, bundle: Bundle, board: str) -> bool:
    """Whether a run on the real ``board`` would read ``path`` by default (for some thread count)."""
    try:
        real = Path(path).resolve()  # a symlink named otherwise may lead there
        here = real.parent == (bundle.root / "profiles").resolve()
    except (OSError, RuntimeError):
        return False
    return here and re.fullmatch(r"{}(-\d+threads)?\.json".format(re.escape(board)), real.name) is not None


def default_profile_path(bundle: Bundle, board: str, simulated: bool, threads: int = 1) -> Path:
    """Where `edgeexit profile` writes by default and where run/bench look: inside the bundle, one file
    per interpreter thread count (a 1-thread profile keeps the plain name)."""
    return bundle.root / "profiles" / "{}{}{}.json".format(board, "-simulated" if simulated else "",
                                                           "-{}threads".format(threads) if threads != 1 else "")


def profile_command(board: str, simulated: Optional[bool], threads: int, bundle: Bundle,
                    out: Optional[Path] = None) -> str:
    """The `edgeexit profile` command line that writes the profile a run of ``board`` looks for: the bundle's
    default one, or ``out``. On a real board it runs under sudo, which needs the full path of a venv's edgeexit."""
    from edgeexit.paths import demo_bundle_dir

    exe = "sudo {} ".format(shutil.which("edgeexit") or "edgeexit") if not simulated else "edgeexit "
    model = "" if Path(bundle.root).resolve() == demo_bundle_dir().resolve() else " --model {}".format(bundle.root)
    return "{}profile --board {}{}{} --threads {}{}".format(exe, board, " --simulate" if simulated else "", model,
                                                           threads, "" if out is None else " --out {}".format(out))


def other_threads_note(bundle: Bundle, board: str, simulated: bool, threads: int) -> Optional[str]:
    """The warning for a run that plans from the board model beside the bundle's default-path profiles of
    this board measured with another interpreter thread count; None when there are none."""
    stem = "{}{}".format(board, "-simulated" if simulated else "")
    others = {}  # type: Dict[int, Path]
    for path in sorted((bundle.root / "profiles").glob(stem + "*.json")):
        m = re.match(re.escape(stem) + r"(?:-(\d+)threads)?\.json\Z", path.name)
        if m and int(m.group(1) or 1) != threads:
            others[int(m.group(1) or 1)] = path
    if not others:
        return None
    return ("planning from the board model: the bundle's profiles of {} were measured with {} interpreter thread(s), "
            "not {} ({}); pass --threads {} to plan from one, or run `{}`".format(
                board, ", ".join(map(str, others)), threads, ", ".join(str(p) for p in others.values()), min(others),
                profile_command(board, simulated, threads, bundle)))


@dataclass
class SegmentLatency:
    """Latency (ms) of every segment at one operating point: what a budget in milliseconds is counted in."""

    ms: Dict[str, float]
    source: str

    def to_exit_and_heads(self, bundle: Bundle, exit_blocks: List[int]) -> "tuple":
        """(ms of the blocks up to each exit, ms of each exit head): the cost arrays threshold fitting takes."""
        blocks = [self.ms[b.label] for b in bundle.blocks]
        to_exit = [float(sum(blocks[: b + 1])) for b in exit_blocks]
        return to_exit, [float(self.ms[h.label]) for h in bundle.exits]

    @classmethod
    def from_profile(cls, path: Path, bundle: Bundle, freq_khz: Optional[int] = None) -> "SegmentLatency":
        """Latencies from an ``edgeexit profile`` file, at ``freq_khz`` (default: its fastest point)."""
        data = _read_profile(path, bundle, None)  # its table is checked there: one column per operating point
        opps = data["cpu_opps_khz"]
        f = max(opps) if freq_khz is None else int(freq_khz)
        if f not in opps:
            raise CalibrationError("profile {} has no column for {} kHz; pick one of {}".format(
                path, f, ", ".join(str(o) for o in opps)))
        col = opps.index(f)
        ms = {s.label: float(data["segments"][s.label]["latency_ms"][col]) for s in bundle.blocks + bundle.exits}
        return cls(ms, "profile {} at {} kHz ({} latency, board {})".format(path, f, data.get("latency_source", "?"), data.get("board", "?")))
