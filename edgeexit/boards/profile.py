"""Firmware profiles: each board's operating points and power-model coefficients
(``firmware_profiles/<name>.toml``; every number cites its source or says it is an assumption)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from edgeexit.boards.config import BoardConfig
from edgeexit.boards.tomlload import load_toml, refuse_non_file
from edgeexit.boards.validate import Table
from edgeexit.errors import BoardConfigError
from edgeexit.paths import firmware_profiles_dir

POWER_MODEL_KEYS = (
    "idle_board_mw", "cpu_ceff_pf", "cpu_static_mw", "mem_active_mw", "cpu_int8_macs_per_cycle",
    "mem_bound_fraction", "invoke_overhead_us",
)
GPU_POWER_MODEL_KEYS = ("gpu_ceff_pf", "gpu_static_mw")
#: [power_model] keys that were renamed -> their new name. Each effective capacitance was always used as
#: ceff * V^2 * f_MHz / 1000 = mW, which holds for picofarads: the old "_nf" name made a measured 0.45 nF,
#: entered as 0.45, draw 1000x too little. The values were pF all along (400 means 0.4 nF).
RENAMED_POWER_MODEL_KEYS = {"cpu_ceff_nf": "cpu_ceff_pf", "gpu_ceff_nf": "gpu_ceff_pf"}

# Physical ranges of a profile's numbers. Each upper bound is far above any board edgeexit could run on (a
# single-board computer draws watts, not a kilowatt) yet keeps every sum and product of the physics finite.
MAX_CPU_KHZ = 100 * 10 ** 6  # 100 GHz
MAX_HZ = 10 ** 11  # GPU and EMC clocks, 100 GHz
MAX_VOLTAGE_MV = 5000
MAX_RAIL_VOLTAGE_MV = 26000  # the INA3221's bus-voltage range: what a rail it measures can show
MAX_POWER_MW = 1e6  # 1 kW
MAX_CEFF_PF = 1e6
MAX_MACS_PER_CYCLE = 1e6
MAX_OVERHEAD_US = 1e6  # 1 s per invoke
MAX_TRANSITION_NS = 10 ** 10  # 10 s per frequency change
MAX_POLL_MS = 10 ** 6
MAX_BUDGET_W = 1e4
MAX_CLOCK_ID = 255  # a firmware clock id (vcgencmd)
#: [power_model] key -> (minimum, maximum, minimum excluded). Power terms may be 0 (a rail left out of the
#: model); a zero macs_per_cycle divided by zero.
POWER_MODEL_RANGES = {
    "idle_board_mw": (0.0, MAX_POWER_MW, False),
    "cpu_ceff_pf": (0.0, MAX_CEFF_PF, False),
    "cpu_static_mw": (0.0, MAX_POWER_MW, False),
    "mem_active_mw": (0.0, MAX_POWER_MW, False),
    "cpu_int8_macs_per_cycle": (0.0, MAX_MACS_PER_CYCLE, True),
    "mem_bound_fraction": (0.0, 1.0, False),
    "invoke_overhead_us": (0.0, MAX_OVERHEAD_US, False),
    "gpu_ceff_pf": (0.0, MAX_CEFF_PF, False),
    "gpu_static_mw": (0.0, MAX_POWER_MW, False),
}


def _extra_range(key: str) -> tuple:
    """Range of an extra [power_model] key, from its unit suffix (cpu_vmin_mv, real_min_cpu_khz ...)."""
    if key.endswith("_mv"):
        return (0.0, float(MAX_VOLTAGE_MV), True)
    if key.endswith("_khz"):
        return (0.0, float(MAX_CPU_KHZ), False)
    if key.endswith("_mw"):
        return (0.0, MAX_POWER_MW, False)
    return (-1e12, 1e12, False)


@dataclass(frozen=True)
class OppTable:
    """Operating points of one clock domain; ``voltage_mv`` is empty where no public source exists."""

    freqs: List[int]
    voltage_mv: List[int]

    def voltage_at(self, freq: int) -> Optional[int]:
        if not self.voltage_mv:
            return None
        return self.voltage_mv[self.freqs.index(freq)] if freq in self.freqs else None


@dataclass(frozen=True)
class CpuFirmware:
    scaling_driver: str
    available_governors: List[str]
    default_governor: str
    transition_latency_ns: int
    tables: Dict[str, OppTable]  # policy name -> table, freqs in kHz
    # Raspberry Pi: the clock id `vcgencmd measure_clock arm` prints, frequency(<id>)=Hz; None elsewhere
    vcgencmd_arm_clock_id: Optional[int] = None


@dataclass(frozen=True)
class GpuFirmware:
    available_governors: List[str]
    default_governor: str
    polling_interval_ms: int
    table: OppTable  # freqs in Hz


@dataclass(frozen=True)
class NvpModelMode:
    """One nvpmodel mode; a cap of None means "no cap" (nvpmodel's -1 / INT_MAX), a floor of None "no
    floor" (nvpmodel's MIN_FREQ 0)."""

    id: int
    name: str
    budget_w: Optional[float]
    online_cpus: int
    cpu_max_khz: Optional[int]
    gpu_max_hz: Optional[int]
    emc_max_hz: Optional[int]
    cpu_min_khz: Optional[int] = None  # the mode's CPU MIN_FREQ, written to every cluster's scaling_min_freq


@dataclass(frozen=True)
class PowerModel:
    """Coefficients for the board physics (see firmware_profiles/*.toml for meaning and sources).

    Units are in the names: P_dyn_mw = util * cores * cpu_ceff_pf * V^2 * f_MHz / 1000 (V in volts;
    pF * V^2 * MHz = uW, hence the / 1000). The GPU term is the same with gpu_ceff_pf.
    """

    idle_board_mw: float
    cpu_ceff_pf: float  # effective switched capacitance per core, pF
    cpu_static_mw: float
    mem_active_mw: float
    cpu_int8_macs_per_cycle: float
    mem_bound_fraction: float
    invoke_overhead_us: float
    gpu_ceff_pf: Optional[float]  # effective switched capacitance of the GPU, pF
    gpu_static_mw: Optional[float]
    # Every other numeric key of [power_model] (e.g. cpu_vmin_mv), kept for the physics to read.
    extra: Dict[str, float] = field(default_factory=dict)
    public_figures: Dict[str, Any] = field(default_factory=dict)
    # INA3221 rail -> the bus voltage its simulated sensor reads (``[power_model.rail_voltage_mv]``); rails not
    # named read sim.sensors.RAIL_VOLTAGE_MV. The current then follows from the modelled power.
    rail_voltage_mv: Dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FirmwareProfile:
    name: str
    board: str
    cpu: CpuFirmware
    gpu: Optional[GpuFirmware]
    emc_freq_hz: List[int]
    nvpmodel_default: Optional[int]
    nvpmodel_modes: List[NvpModelMode]
    power_model: PowerModel
    source: Path

    def cpu_table(self, policy: str) -> OppTable:
        return self.cpu.tables[policy]


def _opp(t: Table, unit_key: str) -> OppTable:
    # frequencies > 0: a 0 kHz operating point divided by zero in the physics
    freqs = t.int_list(unit_key, ascending=True, minimum=1, maximum=MAX_CPU_KHZ if unit_key == "freq_khz" else MAX_HZ)
    volts = t.int_list("voltage_mv", [], minimum=1, maximum=MAX_VOLTAGE_MV)
    if volts and len(volts) != len(freqs):
        raise t.fail("voltage_mv", "must have one entry per {} value ({} != {})".format(unit_key, len(volts), len(freqs)))
    if any(b < a for a, b in zip(volts, volts[1:])):
        # a faster point never runs at a lower voltage; a reversed list made the fastest point the cheapest
        raise t.fail("voltage_mv", "must not fall as {} rises (one entry per operating point, in its order)".format(unit_key))
    return OppTable(freqs, volts)


def _governors(t: Table) -> List[str]:
    govs = t.str_list("available_governors")
    default = t.str("default_governor")
    if default not in govs:
        raise t.fail("default_governor", "{!r} is not in available_governors".format(default))
    return govs


def parse_profile(data: Dict[str, Any], source: Path, board: BoardConfig) -> FirmwareProfile:
    t = Table(data, source)
    t.unknown_keys(["board", "description", "cpu", "gpu", "emc", "nvpmodel", "power_model"])
    if t.str("board") != board.name:
        raise t.fail("board", "is {!r} but the profile is used by board {!r}".format(t.str("board"), board.name))

    ct = t.table("cpu")
    ct.unknown_keys(["scaling_driver", "available_governors", "default_governor", "transition_latency_ns", "opp_tables",
                     "vcgencmd_arm_clock_id"])
    govs = _governors(ct)
    tables = {}  # type: Dict[str, OppTable]
    for ot in ct.tables("opp_tables"):
        ot.unknown_keys(["policies", "freq_khz", "voltage_mv"])
        table = _opp(ot, "freq_khz")
        for pol in ot.str_list("policies"):
            tables[pol] = table
    for pol in board.cpu_policies:
        if pol.name not in tables:
            raise ct.fail("opp_tables", "has no table for {} of board {}".format(pol.name, board.name))
    cpu = CpuFirmware(ct.str("scaling_driver"), govs, ct.str("default_governor"),
                      ct.int("transition_latency_ns", minimum=0, maximum=MAX_TRANSITION_NS), tables,
                      ct.int("vcgencmd_arm_clock_id", None, minimum=0, maximum=MAX_CLOCK_ID))

    gpu = None  # type: Optional[GpuFirmware]
    if board.gpu is not None:
        gt = t.table("gpu")
        gt.unknown_keys(["available_governors", "default_governor", "polling_interval_ms", "freq_hz", "voltage_mv"])
        gpu = GpuFirmware(_governors(gt), gt.str("default_governor"), gt.int("polling_interval_ms", minimum=0, maximum=MAX_POLL_MS),
                          _opp(gt, "freq_hz"))
    elif t.has("gpu"):
        raise t.fail("gpu", "is set but board {} has no [gpu] devfreq node".format(board.name))

    emc = []  # type: List[int]
    if t.has("emc"):
        et = t.table("emc")
        et.unknown_keys(["freq_hz"])
        emc = et.int_list("freq_hz", ascending=True, minimum=1, maximum=MAX_HZ)

    modes = []  # type: List[NvpModelMode]
    default_mode = None  # type: Optional[int]
    if t.has("nvpmodel"):
        nt = t.table("nvpmodel")
        nt.unknown_keys(["default_mode", "modes"])
        for mt in nt.tables("modes"):
            mt.unknown_keys(["id", "name", "budget_w", "online_cpus", "cpu_min_khz", "cpu_max_khz", "gpu_max_hz",
                             "emc_max_hz"])
            budget = mt.num("budget_w", None, minimum=0.0, maximum=MAX_BUDGET_W, min_open=True)
            # A cap is a clock > 0 (no cap: leave the key out); -5 kHz used to be taken as a cap.
            cpu_min = mt.int("cpu_min_khz", None, minimum=1, maximum=MAX_CPU_KHZ)
            cpu_max = mt.int("cpu_max_khz", None, minimum=1, maximum=MAX_CPU_KHZ)
            if cpu_min is not None and cpu_max is not None and cpu_min > cpu_max:
                # 4.9 refuses such a pair (EINVAL): the tree could not boot in this mode
                raise mt.fail("cpu_min_khz", "({}) must not exceed cpu_max_khz ({})".format(cpu_min, cpu_max))
            modes.append(NvpModelMode(mt.int("id", minimum=0), mt.str("name"), budget,
                                      mt.int("online_cpus", minimum=1, maximum=board.possible_cpus),
                                      cpu_max, mt.int("gpu_max_hz", None, minimum=1, maximum=MAX_HZ),
                                      mt.int("emc_max_hz", None, minimum=1, maximum=MAX_HZ), cpu_min))
        ids = [m.id for m in modes]
        if len(set(ids)) != len(ids):
            raise nt.fail("modes", "gives id {} to two modes; give each mode its own id".format(
                next(i for i in ids if ids.count(i) > 1)))
        default_mode = nt.int("default_mode")
        if default_mode not in ids:
            raise nt.fail("default_mode", "{} is not the id of any [[nvpmodel.modes]]".format(default_mode))

    pt = t.table("power_model")
    for old, new in sorted(RENAMED_POWER_MODEL_KEYS.items()):
        if pt.has(old):  # else it would be "missing" (or kept silently as an extra key next to the new one)
            raise pt.fail(old, "was renamed {}: the value is in picofarads (400 means 0.4 nF; multiply a value in "
                               "nF by 1000); rename the key".format(new))
    required = list(POWER_MODEL_KEYS) + (list(GPU_POWER_MODEL_KEYS) if board.gpu else [])
    values = {}  # type: Dict[str, float]
    for k in required:
        low, high, low_open = POWER_MODEL_RANGES[k]
        values[k] = pt.num(k, minimum=low, maximum=high, min_open=low_open)
    extra = {}  # type: Dict[str, float]
    for k, v in pt.data.items():
        if k in values or k in ("public_figures", "rail_voltage_mv"):
            continue
        low, high, low_open = _extra_range(k) if isinstance(k, str) else (-1e12, 1e12, False)
        extra[k] = pt.num(k, minimum=low, maximum=high, min_open=low_open)
    for rail in ("cpu", "gpu"):  # the physics interpolates voltage from vmin up to vmax
        lo, hi = extra.get(rail + "_vmin_mv"), extra.get(rail + "_vmax_mv")
        if lo is not None and hi is not None and lo > hi:
            raise pt.fail(rail + "_vmin_mv", "({:g}) must not exceed {}_vmax_mv ({:g})".format(lo, rail, hi))
    figures = pt.table("public_figures").data
    rail_mv = _rail_voltages(pt, board)
    model = PowerModel(
        idle_board_mw=values["idle_board_mw"], cpu_ceff_pf=values["cpu_ceff_pf"],
        cpu_static_mw=values["cpu_static_mw"], mem_active_mw=values["mem_active_mw"],
        cpu_int8_macs_per_cycle=values["cpu_int8_macs_per_cycle"],
        mem_bound_fraction=values["mem_bound_fraction"], invoke_overhead_us=values["invoke_overhead_us"],
        gpu_ceff_pf=values.get("gpu_ceff_pf"), gpu_static_mw=values.get("gpu_static_mw"),
        extra=extra, public_figures=dict(figures), rail_voltage_mv=rail_mv,
    )
    return FirmwareProfile(source.stem, board.name, cpu, gpu, emc, default_mode, modes, model, source)


def _rail_voltages(pt: Table, board: BoardConfig) -> Dict[str, float]:
    if not pt.has("rail_voltage_mv"):
        return {}
    rt = pt.table("rail_voltage_mv")
    rails = board.power.rails() if board.power.ina3221 else []  # not the Pi 5's PMIC rails: their voltage is modelled
    for name in rt.data:
        if name not in rails:
            raise rt.fail(name, "is not an INA3221 rail of board {} ({}); name one of its rails or remove it".format(
                board.name, ", ".join(rails) or "it has none"))
    return {name: rt.num(name, minimum=0.0, maximum=float(MAX_RAIL_VOLTAGE_MV), min_open=True) for name in rt.data}


def load_profile(board: BoardConfig, directory: Optional[Path] = None) -> FirmwareProfile:
    """Load ``firmware_profiles/<board.firmware_profile>.toml`` and check it fits ``board``."""
    d = directory or firmware_profiles_dir()
    path = d / "{}.toml".format(board.firmware_profile)
    refuse_non_file(path, "profile", board.name)
    if not path.is_file():
        env = os.environ.get("EDGEEXIT_FIRMWARE_PROFILES") if directory is None else None
        fix = "point EDGEEXIT_FIRMWARE_PROFILES (now {}) at the directory that holds it, or unset it to use the " \
              "shipped ones".format(env) if env else "add it"
        raise BoardConfigError("board {} names firmware profile {!r} but {} does not exist; {}".format(
            board.name, board.firmware_profile, path, fix))
    return parse_profile(load_toml(path), path, board)
